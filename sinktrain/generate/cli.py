"""`sinktrain generate`, `chat` and `streameval`: each verb's options are its config dataclass's fields
(sinktrain/generate/config.py), parsed and type-checked like every verb's (sinktrain.cli_config), help from the
fields' docstrings."""

from __future__ import annotations

from sinktrain.cli_config import add_config_verb
from sinktrain.verbs import verb_help


def register(sub) -> None:
    from sinktrain.generate.config import ChatConfig, GenerateConfig, StreamEvalQAConfig

    add_config_verb(sub, "generate", GenerateConfig, run_generate, positionals=("model",),
                    help=verb_help("generate"))
    add_config_verb(sub, "chat", ChatConfig, run_chat, positionals=("model",),
                    help=verb_help("chat"))
    add_config_verb(sub, "streameval", StreamEvalQAConfig, run_streameval, positionals=("model",),
                    help=verb_help("streameval"))


def run_generate(cfg) -> int:
    check_first(cfg)
    from sinktrain.generate.generate import generate

    generate(cfg)
    return 0


def run_chat(cfg) -> int:
    check_first(cfg)
    from sinktrain.generate.chat import chat

    chat(cfg)
    return 0


def run_streameval(cfg) -> int:
    check_first(cfg)
    from sinktrain.generate.streameval import streameval

    streameval(cfg)
    return 0


def check_first(cfg) -> None:
    """cfg.check() with the model's source between its two parts, before a verb's imports (torch, transformers:
    seconds): its options, then its model (a mistyped path is refused here), then the device (which imports torch).
    The verb checks again (cheap)."""
    from sinktrain.model_source import check_model_spec
    from sinktrain.util.devices import check_device

    cfg.check_options()
    check_model_spec(cfg.model)
    check_device(cfg.device)
