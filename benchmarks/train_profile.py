"""Where a training step's GPU time goes: `torch.profiler` over a few bare optimizer steps of sinktrain's model
and loss (the step of `benchmarks/train_throughput.py`'s `bare:` configs), kernels grouped by kind.

    python benchmarks/train_profile.py --preset pythia-160m --seq-len 2048 --micro-batch 32 --precision bf16-mixed \
        --levers compile,fused --peak-tflops 989.4      # one GPU
    python benchmarks/train_profile.py                  # CPU smoke run: tiny preset, operators instead of kernels

Prints one JSON object: wall ms per step, device-busy ms per step (the kernels' summed time: below the wall time,
the GPU waited on the host), that time by kind (matmul, attention, inductor's fused kernels, loss, optimizer,
other) and the top kernels. On a CPU there are no kernels; the top operators by self CPU time stand in.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

# First match wins; kernel names as CUDA, cuBLAS, cuDNN, flash-attention, inductor and liger-kernel spell them.
KINDS = [
    ("attention", r"flash|fmha|attention|sdpa|cudnn"),
    ("optimizer", r"adam|multi_tensor|foreach|clip_grad"),
    ("loss", r"cross_entropy|liger|log_softmax|nll"),
    ("matmul", r"gemm|nvjet|sm90_xmma|cutlass|cublas|wgmma|matmul|addmm|mm\b"),
    ("fused (inductor)", r"triton_"),
]


ANNOTATION = re.compile(r"^(Optimizer\.|ProfilerStep|## )")


def kind_of(name: str) -> str:
    low = name.lower()
    return next((kind for kind, pattern in KINDS if re.search(pattern, low)), "other")


def main(argv=None) -> int:
    import torch
    from torch.profiler import ProfilerActivity, profile

    from sinktrain.train.flops import flops_per_token, mfu
    from _args import int_at_least
    from train_throughput import LEVER_SETS, VARIANT_SINK, bare_step, train_config

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--seq-len", type=int_at_least(1), default=128)
    p.add_argument("--micro-batch", type=int_at_least(1), default=4)
    p.add_argument("--precision", default="auto", choices=("auto", "32-true", "bf16-mixed"))
    p.add_argument("--variant", default="vanilla", choices=sorted(VARIANT_SINK))
    p.add_argument("--levers", default="", help=f"comma list of {', '.join(LEVER_SETS)}")
    p.add_argument("--warmup", type=int_at_least(0), default=3, help="untimed steps first (compilation happens here)")
    p.add_argument("--steps", type=int_at_least(1), default=3, help="steps under the profiler")
    p.add_argument("--rows", type=int_at_least(1), default=20)
    p.add_argument("--peak-tflops", type=float, default=None)
    args = p.parse_args(argv)
    args.accum = 1
    levers = [x for x in args.levers.split(",") if x]
    if any(x not in LEVER_SETS for x in levers):
        p.error(f"--levers takes {', '.join(LEVER_SETS)}; got {args.levers!r}")

    cuda = torch.cuda.is_available()
    precision = args.precision if args.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    try:
        cfg = train_config(args, precision, args.variant, levers, "unused", "unused")
    except ValueError as e:  # a bad --preset or --seq-len
        p.error(str(e).splitlines()[0])
    step, sync = bare_step(cfg, args, stock=False)

    for _ in range(args.warmup):
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            step()
        sync()
        wall_ms = 1000 * (time.perf_counter() - t0) / args.steps  # with the profiler's own overhead
    events = prof.key_averages()
    if cuda:  # the kernels themselves: device-side events, each counted once; not the device-side copy of
        # a user annotation (the optimizer's "Optimizer.step#AdamW.step"), which spans kernels counted already
        rows = [(e.key, e.count, e.self_device_time_total) for e in events if e.self_device_time_total > 0
                and e.device_type == torch.autograd.DeviceType.CUDA and not ANNOTATION.match(e.key)]
    else:
        rows = [(e.key, e.count, e.self_cpu_time_total) for e in events if e.self_cpu_time_total > 0]
    rows.sort(key=lambda r: r[2], reverse=True)
    busy_us = sum(r[2] for r in rows)
    by_kind: dict[str, float] = {}
    for name, _, us in rows:
        by_kind[kind_of(name)] = by_kind.get(kind_of(name), 0.0) + us
    tokens_per_step = cfg.trainer.micro_batch_size * cfg.model.seq_len
    tps = tokens_per_step / (wall_ms / 1000)
    report = {
        "preset": args.preset, "seq_len": args.seq_len, "micro_batch": args.micro_batch, "precision": precision,
        "variant": args.variant, "levers": levers, "device": torch.cuda.get_device_name() if cuda else "cpu",
        "torch": torch.__version__, "steps": args.steps,
        "wall_ms_per_step": round(wall_ms, 2), "tokens_per_s_under_profiler": round(tps, 1),
        "mfu_under_profiler": round(mfu(tps, flops_per_token(cfg.model), 1, args.peak_tflops), 4)
        if args.peak_tflops else None,
        "timed": "device kernels" if cuda else "CPU operators (self time)",
        "busy_ms_per_step": round(busy_us / 1e3 / args.steps, 2),
        "by_kind_ms_per_step": {k: round(v / 1e3 / args.steps, 2) for k, v in
                                sorted(by_kind.items(), key=lambda kv: kv[1], reverse=True)},
        "top": [{"name": name[:120], "kind": kind_of(name), "calls_per_step": count / args.steps,
                 "ms_per_step": round(us / 1e3 / args.steps, 3)} for name, count, us in rows[: args.rows]],
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
