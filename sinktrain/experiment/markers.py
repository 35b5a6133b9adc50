"""Done-markers: `runs/<name>/stages/<stage>.json` records the inputs a stage's artifact was made from.

A stage is skipped only when its marker's inputs equal the current ones (content hashes of the checkpoint,
the exported folders, the configs), so new training or re-prepared data makes every later stage run again
instead of reporting old numbers next to new ones. A stage without a marker (a study started by an older
sinktrain, or killed before the marker) simply runs again.

A marker also records the content hash of each file the stage wrote (`outputs`): a file deleted, cut short or
edited since then makes the stage run again (`output_problem`), instead of a skipped stage handing a damaged
results.json to the report or a stream-eval an export without its tokenizer.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sinktrain.config_io import write_json_atomic
from sinktrain.util.hashing import file_sha256
from sinktrain.util.outputs import read_marker

STAGES_DIR = "stages"


def tree_sha256(folder: Path) -> str:
    """One hash over every file below `folder` (relative names and contents)."""
    h = hashlib.sha256()
    for name, sha in file_hashes(folder).items():
        h.update(f"{name}\0{sha}\n".encode())
    return h.hexdigest()


def config_sha256(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def marker_path(root: Path, stage: str) -> Path:
    return Path(root) / STAGES_DIR / f"{stage}.json"


def file_hashes(folder: Path) -> dict[str, str]:
    """{relative name: sha256} of every file below `folder`, in sorted path order."""
    return {str(p.relative_to(folder)): file_sha256(p) for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def _read_marker(root: Path, stage: str) -> dict | None:
    marker = read_marker(marker_path(root, stage))  # None for none yet, or a damaged one: the stage runs again
    return marker if isinstance(marker, dict) else None


def is_done(root: Path, stage: str, inputs: dict) -> bool:
    marker = _read_marker(root, stage)
    return marker is not None and marker.get("inputs") == json.loads(json.dumps(inputs))


def output_problem(root: Path, stage: str, folder: Path) -> str | None:
    """What changed in `folder` since the stage wrote it and recorded its files ("results.json changed since
    it was written", "tokenizer.json is missing"), or None when every recorded file is as written. Files added
    since (a user's notes) are no damage. A marker without that record (one an older sinktrain wrote) cannot
    vouch for the files: the stage runs again."""
    marker = _read_marker(root, stage)
    recorded = marker.get("outputs") if marker is not None else None
    if not isinstance(recorded, dict):
        return "its done-marker holds no record of the files it wrote (an older sinktrain's)"
    problems = []
    for name, sha in recorded.items():
        path = Path(folder) / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif file_sha256(path) != sha:
            problems.append(f"{name} changed since it was written")
    if not problems:
        return None
    return ", ".join(problems[:3]) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")


def mark_done(root: Path, stage: str, inputs: dict, output: Path | None = None) -> None:
    """Record that `stage` made its artifact from `inputs`; `output`: the folder it wrote, whose files are
    recorded by content hash (output_problem)."""
    path = marker_path(root, stage)
    path.parent.mkdir(parents=True, exist_ok=True)
    marker = {"stage": stage, "inputs": inputs}
    if output is not None:
        marker["outputs"] = file_hashes(output)
    write_json_atomic(path, marker)


def forget(root: Path, stage: str) -> None:
    """Drop a marker before its stage rewrites the artifact: a kill mid-way must not leave it looking done."""
    marker_path(root, stage).unlink(missing_ok=True)
