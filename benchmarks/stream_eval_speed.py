"""Tokens/s of the streaming evaluator's modes: reference (KV cache, one token per forward) vs exact
block-parallel, plus the re-computation baseline. CPU: the `tiny` preset (random weights); GPU (when present):
pythia-160m in bf16, and a Llama-family model of SmolLM2-135M's shape (random weights, through the family adapter)
in fp32 and bf16 with the floor below. Prints one JSON object; --out also writes it to a file.

`--real` adds a real Llama-family model, SmolLM2-135M-Instruct (fetched once, see sinktrain.model_zoo), on a
bundled book at 4+252: parallel vs reference tokens/s, their mean and max |ΔNLL|, and the floor of any exact
evaluator measured in the same run (a plain teacher-forced forward over the same tokens in 2,048-token chunks:
every token needs one forward anyway). `--memory-tokens 10000,100000` also streams that many tokens in fresh
child processes and reports each one's peak RSS (memory must not grow with the stream).

    python benchmarks/stream_eval_speed.py [--threads N] [--real] [--memory-tokens 10000,100000] [--out bench.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from sinktrain.model import ModelConfig, build_model
from sinktrain.stream import parallel_nll, recompute_nll, reference_nll

from _args import int_at_least, int_list

CPU_CACHE, GPU_CACHE, REAL_CACHE = (4, 252), (4, 1020), (4, 252)  # (sinks, window) of each run


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


def book_tokens(tokenizer, n: int) -> np.ndarray:
    from sinktrain.data.longtext import load_long_text

    text = load_long_text("data/books/*.txt", tokenizer, n)
    if len(text) < n:
        raise SystemExit(f"the bundled books hold only {len(text)} tokens, fewer than {n}")
    return text.tokens


def floor_nll(model, stream: np.ndarray, chunk: int = 2048) -> np.ndarray:
    """Teacher-forced NLL over independent 2,048-token chunks: one forward per token, nothing more."""
    out = []
    device = model.get_input_embeddings().weight.device
    with torch.no_grad():
        for a in range(0, len(stream) - 1, chunk):
            ids = torch.as_tensor(stream[a : a + chunk + 1], device=device)
            logits = model(input_ids=ids[None, :-1], use_cache=False).logits[0].float()
            out.append(torch.nn.functional.cross_entropy(logits, ids[1:], reduction="none").double().cpu().numpy())
    return np.concatenate(out)


# SmolLM2-135M's config.json: 30 layers, GQA 9 query / 3 key-value heads, rope_theta 1e5, tied head.
SMOLLM2_SHAPE = dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                     num_key_value_heads=3, head_dim=64, vocab_size=49152, max_position_embeddings=8192,
                     rms_norm_eps=1e-5, rope_parameters={"rope_type": "default", "rope_theta": 100000.0},
                     tie_word_embeddings=True)


def modes_against_floor(model, stream: np.ndarray, device: str, sinks: int, window: int, ref_tokens: int,
                        par_tokens: int, block_size: int, warmup_block: int) -> dict:
    """Reference vs parallel vs the teacher-forced floor on one model and stream: tokens/s and max/mean |ΔNLL|."""
    parallel_nll(model, stream[: warmup_block + 1], sinks, window, block_size=warmup_block)  # warm-up
    ref, r_ref = timed(lambda: reference_nll(model, stream[: ref_tokens + 1], sinks, window), ref_tokens, device)
    par, r_par = timed(lambda: parallel_nll(model, stream[: par_tokens + 1], sinks, window, block_size=block_size),
                       par_tokens, device)
    _, r_floor = timed(lambda: floor_nll(model, stream[: par_tokens + 1]), par_tokens, device)
    diff = np.abs(ref - par[:ref_tokens])
    return {
        "config": f"{sinks}+{window}", "block_size": block_size, "reference": r_ref, "parallel": r_par,
        "floor_teacher_forced_2048": r_floor,
        "parallel_vs_floor": round(r_par["tokens_per_s"] / r_floor["tokens_per_s"], 3),
        "speedup_parallel_vs_reference": round(r_par["tokens_per_s"] / r_ref["tokens_per_s"], 1),
        "mean_abs_dnll_parallel_vs_reference": float(diff.mean()),
        "max_abs_dnll_parallel_vs_reference": float(diff.max()),
    }


def bench_llama(device: str, dtype: torch.dtype, sinks: int, window: int, ref_tokens: int, par_tokens: int,
                block_size: int) -> dict:
    """The Llama family adapter on `device` (CUDA: the script's GPU run): SmolLM2-135M's shape with random
    weights (the real weights do not fit a device call), on a random token stream."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**SMOLLM2_SHAPE)).to(device=device, dtype=dtype).eval()
    stream = np.random.RandomState(0).randint(0, SMOLLM2_SHAPE["vocab_size"], size=par_tokens + 1)
    runs = modes_against_floor(model, stream, device, sinks, window, ref_tokens, par_tokens, block_size, block_size)
    return {"model": "random weights, SmolLM2-135M's shape (llama, 30 layers, GQA 9/3)", "device": device,
            "dtype": str(dtype).replace("torch.", ""), "tf32": torch.backends.cuda.matmul.allow_tf32, **runs,
            "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 2) if device == "cuda" else None}


def bench_real(sinks: int, window: int, ref_tokens: int, par_tokens: int, block_size: int) -> dict:
    from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source

    source = resolve_model_source("smollm2-135m-instruct")
    model, tok = load_pretrained(source), load_model_tokenizer(source)
    stream = book_tokens(tok, max(ref_tokens, par_tokens) + 1)
    runs = modes_against_floor(model, stream, "cpu", sinks, window, ref_tokens, par_tokens, block_size, 256)
    return {"model": "SmolLM2-135M-Instruct (llama, 30 layers, GQA 9/3)", "device": "cpu", "dtype": "float32", **runs}


def memory_child(tokens: int, sinks: int, window: int, block_size: int) -> None:
    """Child process: stream `tokens` tokens in parallel mode, print the peak RSS in MB."""
    from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source

    source = resolve_model_source("smollm2-135m-instruct")
    model, tok = load_pretrained(source), load_model_tokenizer(source)
    stream = book_tokens(tok, tokens + 1)[: tokens + 1]
    loaded_mb = vm_kb("VmRSS") / 1024
    reset_peak()  # the peak while streaming, not the transient copies made while loading the weights
    start = time.perf_counter()
    nll = parallel_nll(model, stream, sinks, window, block_size=block_size)
    seconds = time.perf_counter() - start
    print(json.dumps({"tokens": tokens, "seconds": round(seconds, 1), "tokens_per_s": round(tokens / seconds, 1),
                      "ppl": round(float(np.exp(nll[sinks:].mean())), 3), "rss_after_load_mb": round(loaded_mb, 1),
                      "peak_rss_while_streaming_mb": round(vm_kb("VmHWM") / 1024, 1),
                      "peak_rss_whole_process_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                                                         1)}))


def vm_kb(field: str) -> int:
    """A /proc/self/status memory field (Linux), in kB."""
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets VmHWM to the current RSS (Linux >= 4.0)
        f.write("5")


def bench_memory(token_counts: list[int], sinks: int, window: int, block_size: int, threads: int | None) -> list:
    runs = []
    for n in token_counts:
        cmd = [sys.executable, __file__, "--memory-child", str(n)] + (["--threads", str(threads)] if threads else [])
        done = subprocess.run(cmd, capture_output=True, text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(f"memory run: {runs[-1]}", file=sys.stderr, flush=True)
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int_at_least(1), default=None,
                    help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--cpu-ref-tokens", type=int_at_least(1), default=1024)
    ap.add_argument("--cpu-par-tokens", type=int_at_least(1), default=16384)
    ap.add_argument("--gpu-ref-tokens", type=int_at_least(1), default=2048)
    ap.add_argument("--gpu-par-tokens", type=int_at_least(1), default=262144)
    ap.add_argument("--gpu-llama-par-tokens", type=int_at_least(1), default=65536)
    ap.add_argument("--real", action="store_true", help="also benchmark SmolLM2-135M-Instruct at 4+252")
    ap.add_argument("--real-ref-tokens", type=int_at_least(1), default=256)
    ap.add_argument("--real-par-tokens", type=int_at_least(1), default=8192)
    ap.add_argument("--memory-tokens", type=int_list(1, allow_empty=True), default="",
                    help="comma-separated stream lengths for SmolLM2-135M-Instruct's peak-RSS runs")
    ap.add_argument("--memory-child", type=int_at_least(1), default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    # The reference's NLLs are compared with the first ones of the parallel run, so that run is the longer; it is
    # labelled with its cache (s+w), so its stream must fill that cache.
    for kind, cache in (("cpu", CPU_CACHE), ("gpu", GPU_CACHE), ("gpu_llama", GPU_CACHE), ("real", REAL_CACHE)):
        ref = getattr(args, f"{kind.removesuffix('_llama')}_ref_tokens")
        par = getattr(args, f"{kind}_par_tokens")
        flag = kind.replace("_", "-")
        if par < ref:
            ap.error(f"--{flag}-par-tokens ({par}) must be >= --{kind.removesuffix('_llama')}-ref-tokens ({ref})")
        if par < sum(cache):
            ap.error(f"--{flag}-par-tokens ({par}) never fills the {cache[0]}+{cache[1]} cache it is labelled with; "
                     f"pass >= {sum(cache)}")
    if any(n < sum(REAL_CACHE) for n in args.memory_tokens):
        ap.error(f"--memory-tokens: each stream must fill the {REAL_CACHE[0]}+{REAL_CACHE[1]} cache "
                 f"(>= {sum(REAL_CACHE)} tokens); got {args.memory_tokens}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        memory_child(args.memory_child, *REAL_CACHE, 1024)
        return
    if args.real or args.memory_tokens:  # fetch (or fail) before any timing, not after it
        from sinktrain.model.source import resolve_model_source

        resolve_model_source("smollm2-135m-instruct")
    result = {"torch": torch.__version__, "machine": platform.machine(), "threads": torch.get_num_threads(),
              "cuda": torch.cuda.is_available(), "runs": []}
    import transformers

    result["transformers"] = transformers.__version__
    result["runs"].append(bench("tiny", "cpu", torch.float32, *CPU_CACHE, args.cpu_ref_tokens, args.cpu_par_tokens,
                                args.cpu_ref_tokens, 1024))
    if torch.cuda.is_available():
        result["gpu"] = torch.cuda.get_device_name()
        result["runs"].append(bench("pythia-160m", "cuda", torch.bfloat16, *GPU_CACHE, args.gpu_ref_tokens,
                                    args.gpu_par_tokens, args.gpu_ref_tokens, 2048))
        print(f"gpu run: {json.dumps(result['runs'][-1])}", file=sys.stderr, flush=True)
        for dtype in (torch.float32, torch.bfloat16):
            torch.cuda.reset_peak_memory_stats()
            result["runs"].append(bench_llama("cuda", dtype, *GPU_CACHE, args.gpu_ref_tokens, args.gpu_llama_par_tokens,
                                                  2048))
            print(f"gpu llama run: {json.dumps(result['runs'][-1])}", file=sys.stderr, flush=True)
    else:
        result["gpu"] = None
    if args.real:
        result["runs"].append(bench_real(*REAL_CACHE, args.real_ref_tokens, args.real_par_tokens, 1024))
        print(f"real-model run: {json.dumps(result['runs'][-1])}", file=sys.stderr, flush=True)
    if args.memory_tokens:
        result["memory_smollm2_4+252"] = bench_memory(args.memory_tokens, *REAL_CACHE, 1024, args.threads)
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
