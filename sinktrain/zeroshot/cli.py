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
    from sinktrain.model_source import check_model_spec

    for model in cfg.models:  # a mistyped model is refused before torch, transformers and lm-eval load (seconds)
        check_model_spec(model)
    from sinktrain.zeroshot import zeroshot

    zeroshot(cfg)
    return 0
