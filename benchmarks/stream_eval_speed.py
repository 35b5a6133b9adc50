"""Tokens/s of the streaming evaluator's modes: reference (KV cache, one token per forward) vs exact
block-parallel, plus the re-computation baseline. CPU: the `tiny` preset; GPU (when present): pythia-160m.
Random weights (speed does not depend on them). Prints one JSON object; --out also writes it to a file.

    python benchmarks/stream_eval_speed.py [--threads N] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch

from sinktrain.model import ModelConfig, build_model
from sinktrain.stream import parallel_nll, recompute_nll, reference_nll


def timed(fn, n_tokens: int, device: str):
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    nll = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return nll, {"tokens": n_tokens, "seconds": round(seconds, 3), "tokens_per_s": round(n_tokens / seconds, 1)}


def bench(preset: str, device: str, dtype: torch.dtype, sinks: int, window: int, ref_tokens: int,
          par_tokens: int, rec_tokens: int, block_size: int) -> dict:
    model = build_model(ModelConfig(preset=preset, max_seq_len=max(2048, sinks + window + 1)), seed=0)
    model = model.to(device=device, dtype=dtype).eval()
    stream = np.random.RandomState(0).randint(0, 50000, size=max(ref_tokens, par_tokens, rec_tokens) + 1)
    parallel_nll(model, stream[: block_size + 1], sinks, window, block_size=block_size)  # warm-up
    ref, r_ref = timed(lambda: reference_nll(model, stream[: ref_tokens + 1], sinks, window), ref_tokens, device)
    par, r_par = timed(lambda: parallel_nll(model, stream[: par_tokens + 1], sinks, window, block_size=block_size),
                       par_tokens, device)
    _, r_rec = timed(lambda: recompute_nll(model, stream[: rec_tokens + 1], sinks + window), rec_tokens, device)
    return {
        "preset": preset, "device": device, "dtype": str(dtype).replace("torch.", ""), "config": f"{sinks}+{window}",
        "block_size": block_size, "reference": r_ref, "parallel": r_par, "recompute": r_rec,
        "speedup_parallel_vs_reference": round(r_par["tokens_per_s"] / r_ref["tokens_per_s"], 1),
        "mean_abs_dnll_parallel_vs_reference": float(np.abs(ref - par[:ref_tokens]).mean()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--cpu-ref-tokens", type=int, default=1024)
    ap.add_argument("--cpu-par-tokens", type=int, default=16384)
    ap.add_argument("--gpu-ref-tokens", type=int, default=2048)
    ap.add_argument("--gpu-par-tokens", type=int, default=262144)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
              "cuda": torch.cuda.is_available(), "runs": []}
    import transformers

    result["transformers"] = transformers.__version__
    result["runs"].append(bench("tiny", "cpu", torch.float32, 4, 252, args.cpu_ref_tokens, args.cpu_par_tokens,
                                args.cpu_ref_tokens, 1024))
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
        result["runs"].append(bench("pythia-160m", "cuda", torch.bfloat16, 4, 1020, args.gpu_ref_tokens,
                                    args.gpu_par_tokens, args.gpu_ref_tokens, 2048))
    else:
        result["gpu"] = None
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
