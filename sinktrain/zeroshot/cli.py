"""`sinktrain zeroshot MODEL... --tasks piqa,arc_easy [--limit N] [--data-dir DIR] --out DIR`."""

from __future__ import annotations


def register(sub) -> None:
    from sinktrain.zeroshot.tasks import DEFAULT_TASKS

    p = sub.add_parser("zeroshot", help="zero-shot accuracy (lm-evaluation-harness) on the paper's Table 4 tasks")
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="model folders (sinktrain exports ...), .gguf files, hub ids or zoo names")
    p.add_argument("--tasks", default=",".join(DEFAULT_TASKS), help="comma-separated (default: all of Table 4)")
    p.add_argument("--limit", type=int, default=None, help="score only the first N examples of each task")
    p.add_argument("--batch-size", type=int, default=16, help="requests per forward pass")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32", help="float32, bfloat16 or float16")
    p.add_argument("--data-dir", default=None,
                   help="folder of datasets.save_to_disk copies (as ../shared/data/zeroshot); default: download")
    p.add_argument("--out", required=True, help="folder for results.json, table.md, run.json")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.zeroshot import ZeroShotConfig, zeroshot

    zeroshot(ZeroShotConfig(models=args.models, tasks=args.tasks, out=args.out, limit=args.limit,
                            batch_size=args.batch_size, device=args.device, dtype=args.dtype,
                            data_dir=args.data_dir))
    return 0
