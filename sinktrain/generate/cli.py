"""`sinktrain generate`, `chat` and `streameval`: argparse options made from the verbs' config dataclasses
(sinktrain/generate/config.py), one option per field, its help the field's docstring."""

from __future__ import annotations

import ast
import inspect
import textwrap
from dataclasses import MISSING, fields


def field_docs(cls) -> dict[str, str]:
    """Attribute docstrings (a string literal right after a field) of a dataclass and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__[:-1]):
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError):
            continue
        body = tree.body[0].body
        for a, b in zip(body, body[1:]):
            if isinstance(a, ast.AnnAssign) and isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant):
                docs[a.target.id] = " ".join(str(b.value.value).split())
    return docs


def add_config_args(parser, cls, positional: tuple[str, ...] = ()) -> None:
    docs = field_docs(cls)
    for f in fields(cls):
        help_text = docs.get(f.name, "")
        if f.name in positional:
            parser.add_argument(f.name, help=help_text)
            continue
        flag = "--" + f.name.replace("_", "-")
        default = None if f.default is MISSING else f.default
        if f.type in (bool, "bool"):
            parser.add_argument(flag, action="store_true", help=help_text)
        else:
            kind = {"int": int, "float": float}.get(str(f.type), str)
            parser.add_argument(flag, type=kind, default=default, help=f"{help_text} (default: {default})")


def config_from_args(cls, args):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


def register(sub) -> None:
    from sinktrain.generate.config import ChatConfig, GenerateConfig, StreamEvalQAConfig

    p = sub.add_parser("generate", help="stream a continuation of a prompt through a sink cache, at constant memory")
    add_config_args(p, GenerateConfig, positional=("model",))
    p.set_defaults(func=run_generate)
    p = sub.add_parser("chat", help="multi-turn streaming chat through a sink cache (interactive or a JSONL script)")
    add_config_args(p, ChatConfig, positional=("model",))
    p.set_defaults(func=run_chat)
    p = sub.add_parser("streameval", help="StreamEval (StreamingLLM §4.3): line-retrieval accuracy against input length")
    add_config_args(p, StreamEvalQAConfig, positional=("model",))
    p.set_defaults(func=run_streameval)


def run_generate(args) -> int:
    from sinktrain.generate.config import GenerateConfig
    from sinktrain.generate.generate import generate

    generate(config_from_args(GenerateConfig, args))
    return 0


def run_chat(args) -> int:
    from sinktrain.generate.chat import chat
    from sinktrain.generate.config import ChatConfig

    chat(config_from_args(ChatConfig, args))
    return 0


def run_streameval(args) -> int:
    from sinktrain.generate.config import StreamEvalQAConfig
    from sinktrain.generate.streameval import streameval

    streameval(config_from_args(StreamEvalQAConfig, args))
    return 0
