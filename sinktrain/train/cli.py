"""`sinktrain train --config RECIPE.yaml [--set a.b=c ...] [--run-dir D] [--resume auto|never|PATH]`.

Runs as is on one device, and in every rank under torchrun (`torchrun ... -m sinktrain train ...`).
"""

from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("train", help="pretrain a model from a recipe (single device, DDP or DeepSpeed ZeRO)")
    p.add_argument("--config", required=True, help="training recipe (YAML), e.g. recipes/tiny-cpu.yaml")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set trainer.max_steps=100 (repeatable; values parsed as YAML)")
    p.add_argument("--run-dir", default=None, help="run directory (checkpoints, config.yaml, tb/, metrics.jsonl)")
    p.add_argument("--resume", default=None, help="auto (newest complete checkpoint, default) | never | a checkpoint path")
    p.set_defaults(func=run)


def run(args) -> int:
    from sinktrain.train import load_train_config, train

    cfg = load_train_config(args.config, args.overrides, run_dir=args.run_dir, resume=args.resume)
    run_dir = train(cfg)
    print(f"run dir: {run_dir}")
    return 0
