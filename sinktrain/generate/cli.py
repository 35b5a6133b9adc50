"""`sinktrain generate`, `chat` and `streameval`: each verb's options are its config dataclass's fields
(sinktrain/generate/config.py), parsed and type-checked like every verb's (sinktrain.cli_config), help from the
fields' docstrings."""

from __future__ import annotations

from sinktrain.cli_config import add_config_verb


def register(sub) -> None:
    from sinktrain.generate.config import ChatConfig, GenerateConfig, StreamEvalQAConfig

    add_config_verb(sub, "generate", GenerateConfig, run_generate, positionals=("model",),
                    help="stream a continuation of a prompt through a sink cache, at constant memory")
    add_config_verb(sub, "chat", ChatConfig, run_chat, positionals=("model",),
                    help="multi-turn streaming chat through a sink cache (interactive or a JSONL script)")
    add_config_verb(sub, "streameval", StreamEvalQAConfig, run_streameval, positionals=("model",),
                    help="StreamEval (StreamingLLM §4.3): line-retrieval accuracy against input length")


def run_generate(cfg) -> int:
    from sinktrain.generate.generate import generate

    generate(cfg)
    return 0


def run_chat(cfg) -> int:
    from sinktrain.generate.chat import chat

    chat(cfg)
    return 0


def run_streameval(cfg) -> int:
    from sinktrain.generate.streameval import streameval

    streameval(cfg)
    return 0
