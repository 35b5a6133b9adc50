"""Training throughput: tokens/s and MFU of `sinktrain.train` on this machine, printed as one JSON object.

    python benchmarks/train_throughput.py                             # tiny preset, CPU, single process
    python benchmarks/train_throughput.py --preset pythia-160m --seq-len 2048 --micro-batch 8 \
        --precision bf16-mixed --steps 30                             # one GPU (MFU from the device's peak)

It runs the real training path (`train()` with a throwaway run dir) on a small dataset prepared from the
bundled books (or --data-dir) and reports the median tokens/s of the logged steps after --warmup steps.
tokens/s counts every sequence position (sinks included); MFU = tokens/s × FLOPs/token / (devices × peak),
FLOPs/token as in sinktrain/train/flops.py; null when the peak is unknown (CPU) unless --peak-tflops is given.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="tiny")
    p.add_argument("--sink-tokens", type=int, default=0, help="learnable sink tokens (0: vanilla)")
    p.add_argument("--seq-len", type=int, default=128)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2, help="steps left out of the median")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--peak-tflops", type=float, default=None)
    p.add_argument("--data-dir", default=None, help="a prepared data dir (default: prepare the bundled books)")
    args = p.parse_args(argv)

    import torch

    from sinktrain.train import load_train_config, train
    from sinktrain.train.flops import device_peak_tflops, flops_per_token

    with tempfile.TemporaryDirectory(prefix="sinktrain-bench-") as tmp:
        data_dir = args.data_dir or _prepare_books(Path(tmp) / "data")
        sink = f"{{kind: token, num_tokens: {args.sink_tokens}}}" if args.sink_tokens else "{kind: none, num_tokens: 0}"
        cfg = load_train_config(REPO / "recipes" / "tiny-cpu.yaml", [
            f"model.preset={args.preset}", f"model.sink={sink}", f"model.max_seq_len={args.seq_len}",
            f"data.dir={data_dir}", f"trainer.precision={args.precision}", "trainer.accelerator=auto",
            f"trainer.micro_batch_size={args.micro_batch}",
            f"trainer.global_batch_size={args.micro_batch * args.accum}", f"trainer.max_steps={args.steps}",
            "trainer.val_every=0", "trainer.log_every=1", "checkpoint.every=0", "logging.sink_score_every=0",
            f"logging.peak_tflops={args.peak_tflops if args.peak_tflops else 'null'}",
        ], run_dir=str(Path(tmp) / "run"), resume="never")
        t0 = time.perf_counter()
        train(cfg)
        wall = time.perf_counter() - t0
        rows = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    timed = [r for r in rows if r.get("tokens_per_s") and r["step"] > args.warmup]
    tps = statistics.median(r["tokens_per_s"] for r in timed)
    mfus = [r["mfu"] for r in timed if r.get("mfu") is not None]
    cpu = f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else cpu
    print(json.dumps({
        "preset": args.preset, "sink_tokens": args.sink_tokens, "seq_len": args.seq_len,
        "micro_batch": args.micro_batch, "accum": args.accum, "precision": args.precision,
        "steps": args.steps, "timed_steps": len(timed), "device": device,
        "tokens_per_s": round(tps, 1),
        "flops_per_token": flops_per_token(cfg.model),
        "peak_tflops": device_peak_tflops(args.peak_tflops),
        "mfu": round(statistics.median(mfus), 4) if mfus else None,
        "wall_s": round(wall, 1),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }))
    return 0


def _prepare_books(out: Path) -> str:
    from sinktrain.data import PrepareConfig, prepare

    books = REPO / "data" / "books"
    return str(prepare(PrepareConfig(
        sources=[str(books / "austen_persuasion.txt"), str(books / "bierce_devils_dictionary.txt")],
        out_dir=str(out), txt_documents="paragraphs", val_fraction=0.05, progress=False,
    )))


if __name__ == "__main__":
    sys.exit(main())
