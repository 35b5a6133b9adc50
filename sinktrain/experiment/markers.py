"""Done-markers: `runs/<name>/stages/<stage>.json` records the inputs a stage's artifact was made from.

A stage is skipped only when its marker's inputs equal the current ones (content hashes of the checkpoint,
the exported folders, the configs), so new training or re-prepared data makes every later stage run again
instead of reporting old numbers next to new ones. A stage without a marker (a study started by an older
sinktrain, or killed before the marker) simply runs again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sinktrain.config_io import write_json_atomic
from sinktrain.util.hashing import file_sha256

STAGES_DIR = "stages"


def tree_sha256(folder: Path) -> str:
    """One hash over every file below `folder` (relative names and contents)."""
    h = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        h.update(f"{path.relative_to(folder)}\0{file_sha256(path)}\n".encode())
    return h.hexdigest()


def config_sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def marker_path(root: Path, stage: str) -> Path:
    return Path(root) / STAGES_DIR / f"{stage}.json"


def is_done(root: Path, stage: str, inputs: dict) -> bool:
    path = marker_path(root, stage)
    try:
        return json.loads(path.read_text()).get("inputs") == json.loads(json.dumps(inputs))
    except (OSError, ValueError, AttributeError):  # none yet, or damaged: the stage runs again
        return False


def mark_done(root: Path, stage: str, inputs: dict) -> None:
    path = marker_path(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, {"stage": stage, "inputs": inputs})


def forget(root: Path, stage: str) -> None:
    """Drop a marker before its stage rewrites the artifact: a kill mid-way must not leave it looking done."""
    marker_path(root, stage).unlink(missing_ok=True)
