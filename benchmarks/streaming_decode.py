"""StreamingLLM Fig. 10: per-token decode latency and peak memory against cache size, for
- `sink`: sinktrain's SinkCache (s sinks + window, one token per forward, eviction every step);
- `recompute`: sliding window with re-computation (every token re-encodes the last C tokens from scratch);
- `dense`: a plain DynamicCache holding the whole context of C tokens (skipped where its KV would exceed
  --dense-cap-mb).
The caches of `sink` and `dense` are filled with C tokens in chunks of 64 before the timed decode steps.
Every configuration runs in a fresh child process; memory is the peak RSS (VmHWM, reset after loading) minus
the RSS after loading the model, tokenizing the book and one 8-token forward that pages the (memory-mapped)
weights in, so the weights are excluded. All three
decode the same book tokens (teacher-forced), with the same model, dtype and threads, in one run.

`--long-run N` also generates N tokens through the sink cache (cache --long-cache) in a child and reports its
peak RSS after 4,096 tokens and after N, and the mean ms/token per block of tokens (latency must not grow with
the number of tokens generated so far).

    python benchmarks/streaming_decode.py [--model smollm2-135m-instruct|tiny|random:PRESET|FOLDER]
        [--caches 256,...,4096]
        [--threads 1] [--long-run 100000 --long-model tiny] --out docs/figures/streaming_decode.json
    # on a GPU: the static ring cache with its decode step compiled (CUDA graphs)
    python benchmarks/streaming_decode.py --device cuda --static --compile --out runs/streaming_decode_gpu.json
    # random:PRESET (e.g. random:pythia-160m) needs no weights on the machine: a decode step costs the same
Prints the JSON; with --out also writes it and the plot (same name, .png).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from _args import int_at_least, int_list, torch_device

REPO = Path(__file__).resolve().parents[1]
BOOK = REPO / "data" / "books" / "austen_persuasion.txt"
METHODS = ("sink", "recompute", "dense")
FILL_CHUNK = 64
LABELS = {
    "sink": "StreamingLLM (sink cache)",
    "recompute": "Sliding window w/ re-computation",
    "dense": "Dense (full KV cache)",
}


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def reset_peak_rss() -> None:
    """Give freed heap back to the OS (so later allocations show in RSS), then reset the kernel's peak-RSS
    mark (VmHWM) so that loading the model does not count (glibc, Linux >= 4.0)."""
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def peak_rss_mb() -> float:
    """Peak RSS since the last reset_peak_rss()."""
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024


def random_preset(spec: str) -> str | None:
    """The sinktrain preset of a random-weight model spec (`random:PRESET`; `tiny` = random:tiny), else None."""
    if spec == "tiny":
        return "tiny"
    return spec.removeprefix("random:") if spec.startswith("random:") else None


def load(spec: str, device: str = "cpu", dtype: str = "float32"):
    """The model and book tokens in its tokenization (`random:PRESET`, e.g. random:pythia-160m, or `tiny`:
    sinktrain's GPT-NeoX of that preset with random weights, which time a decode step as trained weights do)."""
    from sinktrain.data.tokenizer import load_tokenizer
    from sinktrain.model.source import load_model_tokenizer, load_pretrained, resolve_model_source

    if random_preset(spec):
        from sinktrain.model import ModelConfig, build_model

        model = build_model(ModelConfig(preset=random_preset(spec)), seed=0).eval().to(device, getattr(torch, dtype))
        tok = load_tokenizer()
    else:
        source = resolve_model_source(spec)
        model, tok = load_pretrained(source, device, dtype), load_model_tokenizer(source)
    ids = tok(BOOK.read_text(), add_special_tokens=False)["input_ids"]
    with torch.no_grad():  # page in the weights (safetensors are memory-mapped) before memory is measured
        model(input_ids=torch.tensor([ids[:8]], device=device), use_cache=False)
    return model, ids


class Meter:
    """Wall time per call and peak memory over a baseline: CUDA's allocator statistics on a GPU, the
    process's peak RSS on a CPU."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated() / 2**20
        else:
            reset_peak_rss()
            self.base = rss_mb()

    def time(self, fn) -> float:
        if self.cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def peak_over_base(self) -> float:
        peak = torch.cuda.max_memory_allocated() / 2**20 if self.cuda else peak_rss_mb()
        return peak - self.base


@torch.no_grad()
def worker(
    method: str,
    spec: str,
    cache: int,
    sinks: int,
    steps: int,
    device: str = "cpu",
    dtype: str = "float32",
    static: bool = False,
    compile_step: bool = False,
    sdpa: str = "decode",
) -> dict:
    """One configuration. `static`: the sink method uses StaticSinkCache; `compile_step`: its decode step is
    torch.compile'd with mode="reduce-overhead" (CUDA graphs on a GPU); `sdpa`: the SDPA kernels of the cached
    methods: "decode" as sinktrain decodes (no cuDNN while the cache grows, sinktrain/model/decode_attention.py),
    "no-cudnn" never cuDNN, "torch" torch's own choice. Re-computation always runs with torch's choice."""
    from torch.nn.attention import sdpa_kernel
    from transformers import DynamicCache

    from sinktrain.model.decode_attention import NO_CUDNN, decode_attention
    from sinktrain.stream.model_info import cache_kwarg
    from sinktrain.stream.sink_cache import SinkCache
    from sinktrain.stream.static_sink_cache import StaticSinkCache

    model, ids = load(spec, device, dtype)
    kw = cache_kwarg(model)
    meter = Meter(device)
    warmup = 5 if compile_step else 2  # compilation (and CUDA-graph recording) happens in the first calls
    need = cache + steps + warmup
    if len(ids) < need:
        raise SystemExit(f"the book has {len(ids)} tokens, fewer than {need}")
    tokens = torch.tensor([ids[:need]], device=device)
    times = []
    if method == "recompute":
        for t in range(cache, cache + steps):  # token t predicted from the C tokens before it, from scratch
            times.append(
                meter.time(lambda: model(input_ids=tokens[:, t - cache : t], use_cache=False, logits_to_keep=1))
            )
    else:
        if method == "dense":
            kv = DynamicCache(config=model.config)
        else:
            kv = (StaticSinkCache if static else SinkCache)(model, sinks, cache - sinks)

        def kernels():  # the SDPA kernels of the next forward through kv (docstring)
            if sdpa == "decode":
                return decode_attention(kv)
            return sdpa_kernel(NO_CUDNN) if sdpa == "no-cudnn" else contextlib.nullcontext()

        for i in range(0, cache, FILL_CHUNK):  # fill C entries in small chunks: the peak is the decode's
            with kernels():
                model(input_ids=tokens[:, i : min(i + FILL_CHUNK, cache)], use_cache=True, logits_to_keep=1, **{kw: kv})
        # The static cache keeps positions and state as tensors, so the compiled step is reused every token.
        step = torch.compile(model, mode="reduce-overhead") if compile_step else model

        def decode_one(t):
            with kernels():
                step(input_ids=tokens[:, t : t + 1], use_cache=True, logits_to_keep=1, **{kw: kv})

        for t in range(cache, cache + steps + warmup):
            times.append(meter.time(lambda: decode_one(t)))
        times = times[warmup:]
        assert method == "dense" or int(kv.get_seq_length()) == cache
        kv_bytes = sum(t.numel() * t.element_size() for layer in kv.layers for t in (layer.keys, layer.values))
    times.sort()
    return {
        "method": method,
        "cache": cache,
        "steps": len(times),
        "ms_per_token": 1000 * sum(times) / len(times),
        "ms_per_token_median": 1000 * times[len(times) // 2],
        "peak_mb_over_model": meter.peak_over_base(),
        ("model_cuda_mb" if meter.cuda else "model_rss_mb"): meter.base,
        "kv_cache_mb": kv_bytes / 2**20 if method != "recompute" else 0.0,
        "cache_kind": ("static" if static else "sink") if method == "sink" else method,
        "compiled": compile_step and method != "recompute",
    }


@torch.no_grad()
def long_worker(spec: str, cache: int, sinks: int, total: int, block: int) -> dict:
    """Greedy generation of `total` tokens through the sink cache; peak RSS at checkpoints, ms/token per block."""
    from sinktrain.generate.decode import Decoder, Sampler
    from sinktrain.stream.sink_cache import SinkCache

    model, ids = load(spec)
    decoder = Decoder(model, SinkCache(model, sinks, cache - sinks))
    reset_peak_rss()
    base = rss_mb()
    marks = sorted({min(4096, total), total // 10, total})
    peaks, blocks = {}, []
    start = time.perf_counter()
    for n, _ in enumerate(decoder.stream(ids[:16], total, Sampler()), start=1):
        if n in marks:
            peaks[n] = peak_rss_mb() - base
        if n % block == 0:
            now = time.perf_counter()
            blocks.append({"tokens": n, "ms_per_token": 1000 * (now - start) / block})
            start = now
    return {
        "model": spec,
        "cache": cache,
        "sinks": sinks,
        "tokens": total,
        "model_rss_mb": base,
        "peak_mb_over_model_at": peaks,
        "ms_per_token_by_block": blocks,
        "cache_mb": decoder.cache.nbytes() / 2**20,
    }


def child(args_list: list[str], threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, __file__, *args_list], capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"child {args_list} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def kv_mb(spec: str, cache: int) -> float:
    from sinktrain.model.source import load_config, resolve_model_source

    if random_preset(spec):
        from sinktrain.model import ModelConfig, hf_config

        cfg = hf_config(ModelConfig(preset=random_preset(spec)))
    else:
        cfg = load_config(resolve_model_source(spec))
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    return 2 * cfg.num_hidden_layers * heads * head_dim * 4 * cache / 2**20


def model_problem(spec: str) -> str | None:
    """Why `spec` cannot be loaded (one line), or None: an unknown preset, a missing folder, a bad hub id."""
    from sinktrain.model import PRESETS
    from sinktrain.model.source import resolve_model_source

    preset = random_preset(spec)
    if preset:
        return None if preset in PRESETS else f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}"
    try:
        resolve_model_source(spec)
    except (FileNotFoundError, ValueError) as e:
        return str(e).splitlines()[0] if str(e) else type(e).__name__
    return None


def plot(result: dict, path: Path) -> None:
    from sinktrain.plotting import pyplot, save_figure

    plt = pyplot()
    rows = result["runs"]
    caches = sorted({r["cache"] for r in rows})
    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(METHODS)
    for i, method in enumerate(METHODS):
        xs, lat, mem = [], [], []
        for j, c in enumerate(caches):
            r = next((r for r in rows if r["method"] == method and r["cache"] == c and "ms_per_token" in r), None)
            if r:
                xs.append(j + (i - 1) * width)
                lat.append(r["ms_per_token"])
                mem.append(r["peak_mb_over_model"])
        ax_t.bar(xs, lat, width, label=LABELS[method])
        ax_m.bar(xs, mem, width, label=LABELS[method])
    for ax, ylabel, title in (
        (ax_t, "per-token decode latency (ms, log)", "Latency"),
        (ax_m, "peak memory over the model (MB)", "Memory"),
    ):
        ax.set_xticks(range(len(caches)), [str(c) for c in caches])
        ax.set_xlabel("cache size (tokens)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(alpha=0.3, axis="y")
    ax_t.set_yscale("log")
    ax_t.legend(fontsize=8)
    m = result["machine"]
    fig.suptitle(
        f"{result['model']} ({result['dtype']}), {m['device']}, {m['threads']} thread(s), {result['date'][:10]}",
        fontsize=9,
    )
    save_figure(fig, path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--caches", type=int_list(1), default="256,512,1024,2048,4096")
    p.add_argument("--sinks", type=int_at_least(0), default=4)
    p.add_argument(
        "--steps", type=int_at_least(1), default=16, help="decode steps timed per configuration (sink, dense)"
    )
    p.add_argument(
        "--recompute-steps",
        type=int_at_least(1),
        default=3,
        help="tokens timed for re-computation (each costs a C-token forward)",
    )
    p.add_argument("--dense-cap-mb", type=float, default=4096.0, help="skip dense where its KV cache would exceed this")
    p.add_argument("--threads", type=int_at_least(1), default=1)
    p.add_argument(
        "--device", type=torch_device, default="cpu", help="cpu | cuda (GPU memory from CUDA's allocator statistics)"
    )
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--static", action="store_true", help="the sink method uses the static ring cache")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the sink and dense decode steps (mode reduce-overhead: CUDA graphs on a GPU); "
        "needs --static",
    )
    p.add_argument(
        "--sdpa",
        choices=("decode", "no-cudnn", "torch"),
        default="decode",
        help="SDPA kernels of the cached methods. decode: as sinktrain decodes (no cuDNN while the cache grows: "
        "it builds a graph for each new length); no-cudnn: never cuDNN; torch: torch's own choice",
    )
    p.add_argument(
        "--long-run", type=int_at_least(0), default=0, help="also generate this many tokens through the sink cache"
    )
    p.add_argument("--long-model", default=None, help="model of the long run (default: --model)")
    p.add_argument("--long-cache", type=int_at_least(1), default=1024)
    p.add_argument("--out", default=None)
    p.add_argument("--worker", nargs=2, metavar=("METHOD", "CACHE"), help=argparse.SUPPRESS)
    p.add_argument("--long-worker", type=int, default=0, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.worker:
        method, cache = a.worker[0], int(a.worker[1])
        steps = a.recompute_steps if method == "recompute" else a.steps
        print(
            json.dumps(
                worker(
                    method,
                    a.model,
                    cache,
                    a.sinks,
                    steps,
                    a.device,
                    a.dtype,
                    a.static,
                    a.compile and method == "sink",
                    a.sdpa,
                )
            )
        )
        return
    if a.long_worker:
        print(json.dumps(long_worker(a.model, a.long_cache, a.sinks, a.long_worker, max(1, a.long_worker // 20))))
        # (the long run measures CPU RSS; on a GPU read the decode-step runs' CUDA memory instead)
        return
    if a.compile and not a.static:
        p.error("--compile needs --static (the dynamic sink cache changes shape every step)")
    if min(a.caches + [a.long_cache] * bool(a.long_run)) <= a.sinks:
        p.error(f"--caches (and --long-cache) must be larger than --sinks ({a.sinks}): the sink cache needs a window")
    for flag, spec in (("--model", a.model), ("--long-model", a.long_model if a.long_run else None)):
        if spec and (problem := model_problem(spec)):  # before any child starts: one line, not a child's traceback
            p.error(f"{flag}: {problem}")
    caches = a.caches
    common = [
        "--model",
        a.model,
        "--sinks",
        str(a.sinks),
        "--steps",
        str(a.steps),
        "--recompute-steps",
        str(a.recompute_steps),
        "--device",
        a.device,
        "--dtype",
        a.dtype,
        "--sdpa",
        a.sdpa,
    ]
    common += ["--static"] * a.static + ["--compile"] * a.compile
    runs = []
    for cache in caches:
        for method in METHODS:
            if method == "dense" and kv_mb(a.model, cache) > a.dense_cap_mb:
                runs.append({"method": method, "cache": cache, "skipped": f"KV cache over {a.dense_cap_mb} MB"})
                continue
            runs.append(child(common + ["--worker", method, str(cache)], a.threads))
            print(json.dumps(runs[-1]), file=sys.stderr, flush=True)
    speedup = {}
    for cache in caches:
        by = {r["method"]: r for r in runs if r["cache"] == cache and "ms_per_token" in r}
        if "sink" in by and "recompute" in by:
            speedup[cache] = by["recompute"]["ms_per_token"] / by["sink"]["ms_per_token"]
    import transformers

    result = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": a.model,
        "dtype": a.dtype,
        "sink_cache": "static" if a.static else "sink",
        "compiled_decode": a.compile,
        "sdpa": a.sdpa,
        "sinks": a.sinks,
        "command": "python benchmarks/streaming_decode.py " + " ".join(sys.argv[1:]),
        "machine": {
            "device": torch.cuda.get_device_name()
            if a.device.startswith("cuda")
            else f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
            "threads": a.threads,
            "load_average_at_start": os.getloadavg(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
        "gpu": "this run" if a.device.startswith("cuda") else "not measured (no GPU in this run)",
        "runs": runs,
        "recompute_over_sink_speedup": speedup,
    }
    if a.long_run:
        long_args = [
            "--model",
            a.long_model or a.model,
            "--sinks",
            str(a.sinks),
            "--long-cache",
            str(a.long_cache),
            "--long-worker",
            str(a.long_run),
        ]
        result["long_run"] = child(long_args, a.threads)
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        out = Path(a.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
        plot(result, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
