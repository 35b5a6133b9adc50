"""`sinktrain train --config RECIPE.yaml [--set a.b=c ...] [--run_dir D] [--resume auto|never|PATH]`.

The arguments are TrainConfig's keys (typed; `sinktrain train --help` lists them). Runs as is on one device,
and in every rank under torchrun (`torchrun ... -m sinktrain train ...`).
"""

from __future__ import annotations

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.train.config import TrainConfig

    add_config_verb(sub, "train", TrainConfig, run,
                    help=verb_help("train"))


def run(cfg) -> int:
    from sinktrain.train import train

    run_dir = train(cfg)
    print(f"run dir: {run_dir}")
    return 0
