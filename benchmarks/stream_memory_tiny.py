"""Peak memory of a bare `parallel_nll` call on the `tiny` preset (2 layers, d 64, 50k vocab; random weights, the
same sizes as a trained tiny folder), fp32, 4+1020, block 1024, on CPU: each stream length runs in a fresh
process, which prints its peak RSS (the whole process: torch, the model, the stream and its NLLs). Memory must not
grow with the stream. Prints one JSON object.

    python benchmarks/stream_memory_tiny.py [--tokens 8000,40000] [--threads N]      # 15-40 s on 2 cores
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

from _args import int_at_least, int_list

SINKS, WINDOW, BLOCK = 4, 1020, 1024


def child(tokens: int, threads: int | None) -> None:
    """Stream `tokens` random token ids in parallel mode; print the process's peak RSS in MB."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    from sinktrain.model import ModelConfig, build_model
    from sinktrain.stream import parallel_nll

    model = build_model(ModelConfig(preset="tiny", max_seq_len=2048), seed=0).eval()
    stream = np.random.RandomState(0).randint(0, 50000, size=tokens + 1)
    loaded_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    with torch.no_grad():
        parallel_nll(model, stream, SINKS, WINDOW, block_size=BLOCK)
    seconds = time.perf_counter() - start
    print(json.dumps({"tokens": tokens, "seconds": round(seconds, 1),
                      "peak_rss_before_streaming_mb": round(loaded_mb, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int_list(SINKS + WINDOW), default="8000,40000",
                    help="comma-separated stream lengths, each run in its own process")
    ap.add_argument("--threads", type=int_at_least(1), default=None,
                    help="torch intra-op threads (default: torch's choice)")
    ap.add_argument("--child", type=int_at_least(1), default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.threads)
        return
    import torch

    runs = []
    for n in args.tokens:
        threads = ["--threads", str(args.threads)] if args.threads else []
        done = subprocess.run([sys.executable, __file__, "--child", str(n), *threads], capture_output=True,
                              text=True, check=True)
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    print(json.dumps({"torch": torch.__version__, "machine": platform.machine(), "preset": "tiny",
                      "config": f"{SINKS}+{WINDOW}", "block_size": BLOCK,
                      "threads": args.threads or torch.get_num_threads(), "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
