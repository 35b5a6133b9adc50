"""How closely can two fp32 computations of a real model agree? SmolLM2-135M-Instruct, the first N tokens of a
bundled book, printed as one JSON object.

The streaming evaluator's two modes (parallel, reference) do the same arithmetic in a different order: matrix
products over blocks of tokens vs one token at a time. In fp32 that reorders the rounding. This script puts
their disagreement beside transformers' own: the same model run over the same tokens as one forward, as
128-token chunks through a KV cache, and one token at a time through a KV cache (dense attention, no sinktrain
code). The parallel mode is also compared with itself at other query blocks (--other-blocks): the same code
and formulas; the block changes only the shapes of its products and the key its rotary angles count from.
Each fp32 run is also compared against float64 (the model in float64, rotary angles computed in float64),
where the two evaluator modes agree to 1e-9 (tests/stream/test_smollm2.py).

    python benchmarks/stream_fp32_floor.py [--tokens 512] [--sinks 4 --window 60] [--gemm-reference] [--out floor.json]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import platform
import time
import types
from pathlib import Path

import numpy as np
import torch

from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source
from sinktrain.stream import parallel_nll, reference_nll
from sinktrain.stream.model_info import cache_kwarg

from _args import int_at_least, int_list

BOOK = Path(__file__).resolve().parents[1] / "data" / "books" / "austen_persuasion.txt"


def nll_from_logits(logits: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    return torch.nn.functional.cross_entropy(logits.float(), targets, reduction="none").double().numpy()


@torch.no_grad()
def transformers_nll(model, ids: torch.Tensor, chunk: int | None) -> np.ndarray:
    """The model's own forward: one call (chunk=None), or chunks of `chunk` tokens through a DynamicCache."""
    from transformers import DynamicCache

    if chunk is None:
        return nll_from_logits(model(input_ids=ids[None, :-1], use_cache=False).logits[0], ids[1:])
    cache, kw, logits = DynamicCache(config=model.config), cache_kwarg(model), []
    for a in range(0, len(ids) - 1, chunk):
        logits.append(model(input_ids=ids[None, a : min(a + chunk, len(ids) - 1)], use_cache=True,
                            **{kw: cache}).logits[0])
    return nll_from_logits(torch.cat(logits), ids[1:])


def float64_copy(model):
    """The model in float64 with its rotary angles in float64 too (transformers computes them in fp32 whatever
    the dtype): the arithmetic both fp32 modes approximate."""
    m64 = type(model)(model.config)
    m64.load_state_dict(model.state_dict())
    m64 = m64.double().eval()
    rotary = m64.model.rotary_emb
    inv_freq = rotary.inv_freq.double()

    def forward(self, x, position_ids):
        angles = position_ids[..., None].double() * inv_freq
        emb = torch.cat([angles, angles], dim=-1)
        return emb.cos().to(x.dtype), emb.sin().to(x.dtype)

    rotary.forward = types.MethodType(forward, rotary)
    return m64


@contextlib.contextmanager
def gemm_rows(rows: int = 16):
    """Every linear layer's input padded with zero rows to at least `rows` rows (and cut back after): a one-token
    forward then runs on BLAS's matrix-matrix kernel, as the parallel mode's blocks do, instead of its one-row
    kernel, which sums in another order. Shows how much of the modes' fp32 gap that kernel choice is."""
    plain = torch.nn.functional.linear

    def padded(x, weight, bias=None):
        flat = x.reshape(-1, x.shape[-1])
        if flat.shape[0] >= rows:
            return plain(x, weight, bias)
        wide = torch.cat([flat, flat.new_zeros(rows - flat.shape[0], flat.shape[1])])
        return plain(wide, weight, bias)[: flat.shape[0]].reshape(*x.shape[:-1], weight.shape[0])

    torch.nn.functional.linear = padded  # nn.Linear.forward looks it up on the module at each call
    try:
        yield
    finally:
        torch.nn.functional.linear = plain


def gap(a: np.ndarray, b: np.ndarray) -> dict:
    d = np.abs(a - b)
    return {"max": float(d.max()), "mean": float(d.mean()), "argmax": int(d.argmax())}


@torch.no_grad()
def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tokens", type=int_at_least(2), default=512, help=">= sinks + window (the cache fills)")
    p.add_argument("--sinks", type=int_at_least(0), default=4)
    p.add_argument("--window", type=int_at_least(1), default=60)
    p.add_argument("--block-size", type=int_at_least(1), default=128, help="the parallel mode's query block")
    p.add_argument("--other-blocks", type=int_list(1, allow_empty=True), default="1,512",
                   help="parallel mode again at these blocks (comma list)")
    p.add_argument("--gemm-reference", action="store_true",
                   help="also run the reference with every linear layer on BLAS's matrix-matrix kernel (see gemm_rows)")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    if args.tokens < args.sinks + args.window:  # the results are labelled sinktrain_{s}+{w}
        p.error(f"--tokens ({args.tokens}) never fills the {args.sinks}+{args.window} cache; "
                f"pass >= {args.sinks + args.window} or a smaller --sinks/--window")

    t0 = time.perf_counter()
    source = resolve_model_source("smollm2-135m-instruct")
    tok = load_model_tokenizer(source)
    text = BOOK.read_text()[:40_000]
    stream = np.asarray(tok(text, add_special_tokens=False)["input_ids"], dtype=np.int64)[: args.tokens]
    if len(stream) < args.tokens:
        p.error(f"--tokens ({args.tokens}) is more than the {len(stream)} tokens of the book excerpt")
    model = load_pretrained(source)
    ids = torch.as_tensor(stream)
    s, w = args.sinks, args.window
    # The amplifier: the largest residual-stream entries (the massive activations at the sink token).
    hidden = model(input_ids=ids[None], output_hidden_states=True).hidden_states
    residual_absmax = {"first_token": max(float(h[0, 0].abs().max()) for h in hidden),
                       "other_tokens": max(float(h[0, 1:].abs().max()) for h in hidden)}

    hf = {name: transformers_nll(model, ids, chunk) for name, chunk in
          (("one_forward", None), ("chunks_128", 128), ("token_by_token", 1))}
    ref = reference_nll(model, stream, s, w)
    par = parallel_nll(model, stream, s, w, block_size=args.block_size)
    others = {b: parallel_nll(model, stream, s, w, block_size=b)
              for b in args.other_blocks}
    if args.gemm_reference:
        with gemm_rows():
            gemm_ref = reference_nll(model, stream, s, w)
    m64 = float64_copy(model)
    truth = parallel_nll(m64, stream, s, w, block_size=args.block_size)
    truth_dense = transformers_nll(m64, ids, None)

    result = {
        "date": datetime.date.today().isoformat(), "machine": platform.machine(), "torch": torch.__version__,
        "threads": torch.get_num_threads(), "model": "SmolLM2-135M-Instruct fp32", "tokens": args.tokens,
        "residual_absmax": residual_absmax,
        "transformers_alone_dense": {
            "one_forward_vs_chunks_128": gap(hf["one_forward"], hf["chunks_128"]),
            "one_forward_vs_token_by_token": gap(hf["one_forward"], hf["token_by_token"]),
            "one_forward_vs_float64": gap(hf["one_forward"], truth_dense),
            "token_by_token_vs_float64": gap(hf["token_by_token"], truth_dense),
        },
        f"sinktrain_{s}+{w}": {
            "parallel_vs_reference": gap(par, ref),
            **{f"parallel_block_{b}_vs_block_{args.block_size}": gap(o, par) for b, o in others.items()},
            "parallel_vs_float64": gap(par, truth),
            "reference_vs_float64": gap(ref, truth),
            **({"parallel_vs_reference_on_gemm": gap(par, gemm_ref)} if args.gemm_reference else {}),
        },
        "seconds": round(time.perf_counter() - t0, 1),
        "command": "python benchmarks/stream_fp32_floor.py " + " ".join(argv or __import__("sys").argv[1:]),
    }
    text_out = json.dumps(result, indent=1)
    print(text_out)
    if args.out:
        Path(args.out).write_text(text_out + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
