"""Whose run directory is this, and who is writing it: the guards `train` passes before it writes anything.

- A folder that is not empty and not a sinktrain run is the user's: refused, nothing in it is touched.
- A sinktrain run dir without a checkpoint starts over; what that discards is said in one line.
- One training at a time: global rank 0 holds an exclusive `fcntl.flock` on `<run_dir>/run.lock` for the whole
  run. The kernel drops it when the process ends, however it ends (kill -9 included), so a lock never goes
  stale; a second training is refused with the holder's pid and host (written into the lock file).
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from contextlib import contextmanager
from pathlib import Path

from sinktrain.train import checkpoint as ckpt
from sinktrain.util.outputs import check_out_outside

RUN_FORMAT = "sinktrain-run/1"  # run.json's "format"
CONFIG_FILE = "config.yaml"
RUN_INFO_FILE = "run.json"
LOCK_FILE = "run.lock"
TB_DIR = "tb"
METRICS_FILE = "metrics.jsonl"  # one JSON row per logged step (train/metrics.py writes it)


def is_sinktrain_run(run_dir: Path) -> bool:
    """True for a folder sinktrain's `train` made: its run.json, a checkpoint, or only its lock (a kill at start)."""
    info = run_dir / RUN_INFO_FILE
    if info.is_file():
        try:
            data = json.loads(info.read_text())
        except (ValueError, UnicodeDecodeError):
            data = {}
        # run.json files written before the format key existed carry flops_per_token and the data manifest
        legacy = isinstance(data, dict) and {"flops_per_token", "data_manifest"} <= data.keys()
        if legacy or (isinstance(data, dict) and data.get("format") == RUN_FORMAT):
            return True
    if ckpt.list_checkpoints(run_dir):
        return True
    return {p.name for p in run_dir.iterdir()} <= {LOCK_FILE}


def read_run_info(path: Path) -> dict:
    """An earlier run.json (its schedule_changes go on into the new one); one line naming it if it is damaged."""
    try:
        info = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        info = e
    if not isinstance(info, dict) or not isinstance(info.get("schedule_changes", []), list):
        why = f"is not valid JSON ({info})" if isinstance(info, Exception) else "is not a sinktrain run.json"
        raise ValueError(f"{path} {why}; restore it from a copy, or delete it to resume without its record of "
                         f"earlier schedule changes")
    return info


def trained_manifest_sha256(ckpt: Path, meta: dict) -> str | None:
    """sha256 of the data manifest a checkpoint was trained on: its meta.json's, else (checkpoints written
    before meta.json recorded it) the run.json of the run it lies in; None when neither says."""
    if meta.get("data_manifest_sha256"):
        return meta["data_manifest_sha256"]
    try:
        info = json.loads((ckpt.parent.parent / RUN_INFO_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info.get("data_manifest_sha256") if isinstance(info, dict) else None


def check_run_dir_is_ours(run_dir: Path) -> None:
    """Refuse a file, or a non-empty folder that is not a sinktrain run (its config.yaml, tb/ ... are the user's)."""
    if run_dir.exists() and not run_dir.is_dir():
        raise FileExistsError(f"run dir {str(run_dir)!r} is a file; pass a folder to --run-dir")
    if run_dir.is_dir() and not is_sinktrain_run(run_dir):
        names = sorted(p.name for p in run_dir.iterdir())
        raise FileExistsError(
            f"run dir {str(run_dir)!r} is not empty and not a sinktrain run (it holds "
            f"{', '.join(map(repr, names[:3]))}{', ...' if len(names) > 3 else ''}); choose a new or empty --run-dir"
        )


MODEL_WEIGHTS = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")


def check_run_dir_apart(run_dir: Path, data_dir: Path) -> None:
    """Refuse a run dir inside the data folder the run reads or inside a model folder: a run writes its
    checkpoints, metrics and tokenizer there, which changed the dataset (whose later `prepare --overwrite` then
    refused it as foreign) or the model folder (carried along by its next push)."""
    check_out_outside(run_dir, {"data.dir": str(data_dir)}, option="--run-dir")
    where = run_dir.expanduser().resolve()
    for folder in where.parents:
        if (folder / "config.json").is_file() and any((folder / w).is_file() for w in MODEL_WEIGHTS):
            raise FileExistsError(f"--run-dir {str(run_dir)!r} lies inside model folder {str(folder)!r}; choose a "
                                  f"--run-dir outside it")


def announce_fresh_start(run_dir: Path) -> None:
    """A sinktrain run dir without a complete checkpoint starts at step 0: say what that replaces."""
    if not run_dir.is_dir():
        return
    discarded = []
    metrics = run_dir / METRICS_FILE
    if metrics.is_file():
        rows = sum(1 for line in metrics.read_text().splitlines() if line.strip())
        discarded.append(f"{METRICS_FILE} ({rows} rows)")
    if (run_dir / TB_DIR).is_dir():
        discarded.append(f"{TB_DIR}/")
    rewritten = [n for n in (CONFIG_FILE, RUN_INFO_FILE) if (run_dir / n).is_file()]
    if not discarded and not rewritten:
        return
    print(f"train: {run_dir} has no complete checkpoint, so this run starts at step 0: "
          f"discarding {', '.join(discarded) or 'nothing'}, rewriting {', '.join(rewritten) or 'nothing'}; "
          f"anything else in it is kept", file=sys.stderr, flush=True)


@contextmanager
def run_dir_lock(run_dir: Path):
    """Hold the run dir's exclusive lock for the `with` block; FileExistsError naming the holder if taken."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise FileExistsError(
            f"run dir {str(run_dir)!r} is in use by another training ({holder}); wait for it to end, "
            f"or choose another --run-dir"
        ) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
