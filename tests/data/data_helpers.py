"""Plain helpers for the data-stage tests (fixtures are in conftest.py)."""

from pathlib import Path

from tokenizers import Tokenizer

from sinktrain.data import PrepareConfig, prepare


def count_tokens(raw_tok: Tokenizer, documents: list[str]) -> int:
    """Tokens a prepared split should hold for `documents`: each document's ids plus one EOD."""
    return sum(len(raw_tok.encode(d, add_special_tokens=False).ids) + 1 for d in documents)


def run_prepare(sources, out_dir, **kw) -> Path:
    kw.setdefault("progress", False)
    return prepare(PrepareConfig(sources=[str(s) for s in sources], out_dir=str(out_dir), **kw))
