"""`sinktrain zeroshot MODEL... --tasks piqa,arc_easy [--limit N] [--data_dir DIR] --out DIR`: ZeroShotConfig's
keys, typed (`sinktrain zeroshot --help` lists them)."""

from __future__ import annotations

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.zeroshot.config import ZeroShotConfig

    add_config_verb(sub, "zeroshot", ZeroShotConfig, run, positionals=("models",),
                    help=verb_help("zeroshot"))


def run(cfg) -> int:
    from sinktrain.zeroshot import zeroshot

    zeroshot(cfg)
    return 0
