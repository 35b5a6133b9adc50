"""The one atomic-write helper: write to `<name>.tmp`, then rename over the target. A reader (or a later run
after a kill) never sees a half-written file: the file is either the old one or the complete new one."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml


def temp_name(path: str | Path) -> Path:
    """The temporary name atomic_path writes `path` under (what a kill before the rename leaves)."""
    path = Path(path)
    return path.with_name(f"{path.stem}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | Path, unique: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to `path`; renamed onto `path` when the block ends without an error.

    The temporary name keeps the suffix (`x.tmp.png`), so writers that pick a format by suffix still work.
    `unique`: for a file in a folder of the user's (chat's transcript), a new file of a name nobody holds
    (`.x.<random>.tmp.jsonl`), created exclusively: the fixed name overwrote a file of the user's of that name, or
    wrote through a link there into the file it points to.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if unique:
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
        os.close(fd)
        tmp = Path(name)
    else:
        tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def write_yaml_atomic(path: str | Path, obj) -> None:
    write_text_atomic(path, yaml.safe_dump(obj, sort_keys=False))
