"""Plain helpers for the data-stage tests (fixtures are in conftest.py)."""

from pathlib import Path

from tokenizers import Tokenizer

from sinktrain.cli import main
from sinktrain.data import PrepareConfig, prepare


def count_tokens(raw_tok: Tokenizer, documents: list[str]) -> int:
    """Tokens a prepared split should hold for `documents`: each document's ids plus one EOD."""
    return sum(len(raw_tok.encode(d, add_special_tokens=False).ids) + 1 for d in documents)


def run_prepare(sources, out_dir, **kw) -> Path:
    kw.setdefault("progress", False)
    return prepare(PrepareConfig(sources=[str(s) for s in sources], out_dir=str(out_dir), **kw))


def cli(capsys, *argv) -> tuple[int, str]:
    """`sinktrain ARGV`: its exit status and its stderr (stripped)."""
    code = main(list(argv))
    return code, capsys.readouterr().err.strip()


def snapshot(folder: Path) -> dict:
    """Every file below `folder` (links not followed) and its bytes: equal snapshots mean nothing changed."""
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file() and not p.is_symlink()}
