"""Where a decode step's time goes: `torch.profiler` over a few eager decode steps of a dense cache and of a full
sink cache, at one cache size, with torch's own SDPA kernel choice or without cuDNN attention.

    python benchmarks/decode_profile.py --device cuda --dtype bfloat16 --cache 4096 [--sdpa torch|no-cudnn]

Random weights of a sinktrain preset (default pythia-160m): a decode step costs what it costs with trained
weights. Prints one JSON object: for each cache, ms per token and the profiler's top operators by CPU time
(per token: self and total CPU ms, device ms, calls); the figures in docs/benchmarks.md ("Decode kernels") come
from this script on an H200.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time

import torch
from torch.nn.attention import sdpa_kernel
from torch.profiler import ProfilerActivity, profile
from transformers import DynamicCache

from sinktrain.model import PRESETS, ModelConfig, build_model
from sinktrain.model.decode_attention import NO_CUDNN
from sinktrain.stream.model_info import cache_kwarg
from sinktrain.stream.sink_cache import SinkCache

from _args import int_at_least, torch_device


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


@torch.no_grad()
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="pythia-160m", choices=list(PRESETS))
    p.add_argument("--device", type=torch_device, default="cpu")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--cache", type=int_at_least(1), default=4096)
    p.add_argument("--sinks", type=int_at_least(0), default=4)
    p.add_argument("--steps", type=int_at_least(1), default=16,
                   help="timed decode steps (then 8 more under the profiler)")
    p.add_argument("--sdpa", choices=("torch", "no-cudnn"), default="torch")
    p.add_argument("--rows", type=int_at_least(1), default=15)
    a = p.parse_args()
    if a.cache <= a.sinks:
        p.error(f"--cache ({a.cache}) must be larger than --sinks ({a.sinks}): the sink cache needs a window")
    model = build_model(ModelConfig(preset=a.preset), seed=0).eval().to(a.device, getattr(torch, a.dtype))
    kw = cache_kwarg(model)
    ids = torch.randint(0, model.config.vocab_size, (1, a.cache + a.steps + 16), device=a.device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if a.device.startswith("cuda") else [])
    report = {"preset": a.preset, "device": a.device, "dtype": a.dtype, "cache": a.cache, "sdpa": a.sdpa,
              "torch": torch.__version__, "caches": {}}
    caches = {"dense": DynamicCache(config=model.config), "sink": SinkCache(model, a.sinks, a.cache - a.sinks)}
    for name, kv in caches.items():
        with sdpa_kernel(NO_CUDNN) if a.sdpa == "no-cudnn" else contextlib.nullcontext():
            for i in range(0, a.cache, 64):  # fill C entries
                model(input_ids=ids[:, i : i + 64], use_cache=True, logits_to_keep=1, **{kw: kv})
            t = a.cache

            def step():
                nonlocal t
                model(input_ids=ids[:, t : t + 1], use_cache=True, logits_to_keep=1, **{kw: kv})
                t += 1

            for _ in range(4):  # warm-up
                step()
            sync(a.device)
            start = time.perf_counter()
            for _ in range(a.steps):
                step()
            sync(a.device)
            ms = 1000 * (time.perf_counter() - start) / a.steps
            with profile(activities=activities) as prof:
                for _ in range(8):
                    step()
                sync(a.device)
        ops = sorted(prof.key_averages(), key=lambda e: e.cpu_time_total, reverse=True)[: a.rows]
        report["caches"][name] = {
            "ms_per_token": round(ms, 3),
            "top_ops_per_token": [
                {"op": e.key, "calls": e.count / 8, "self_cpu_ms": round(e.self_cpu_time_total / 8e3, 3),
                 "cpu_total_ms": round(e.cpu_time_total / 8e3, 3), "device_ms": round(e.device_time_total / 8e3, 3)}
                for e in ops
            ],
        }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
