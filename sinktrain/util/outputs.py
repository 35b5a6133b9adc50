"""Outputs that never lose an earlier result.

One rule for every verb that writes a folder (export, stream-eval, zeroshot, streameval): a folder that already
holds files is replaced only when the user says so (`--overwrite`), only if it is an earlier output of the same
verb (it holds one of the verb's marker files), and, where the verb stages its output, only once the new output
is whole. Without the rule a second run into the same folder replaced the first one's results and left the
first one's per-configuration files beside the new ones, where they read as results of the second run. A verb
that writes one file (chat's transcript) refuses an existing one the same way.
"""

from __future__ import annotations

import glob
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def check_out_dir(out: str | Path, *, overwrite: bool, markers: tuple[str, ...], what: str,
                  option: str = "--out", is_earlier=None) -> None:
    """Refuse, before any work, an output folder the run would lose data in. `markers`: names (files or folders)
    of which an earlier output of this verb holds at least one; `what` names the verb's output in the message.
    `is_earlier(out)`, where given, decides instead (a verb whose marker file is newer than some of its outputs
    recognises the older ones by their content)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{option} {str(out)!r} is a file; pass a folder (it is created if missing)")
    if Path.cwd().resolve().is_relative_to(out.resolve()):  # it would be replaced under the running process
        raise FileExistsError(f"{option} {str(out)!r} is the current folder or holds it; pass a folder inside it")
    # staged_out_dir moves an earlier output aside to <out>.old-<tag> before renaming the new one in: a kill between
    # the two renames leaves it there and no <out>. It is the only copy of that output: never run over it.
    left = sorted(out.parent.glob(f"{glob.escape(out.name)}.old-*")) if not out.exists() else []
    if left:
        raise FileExistsError(f"{str(left[0])!r} holds an earlier output that a killed run moved aside; move it back "
                              f"to {str(out)!r} (or delete it) and run again")
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it "
                              f"(once the new {what} is complete) or choose another {option}")
    if not (is_earlier(out) if is_earlier is not None else any((out / m).exists() for m in markers)):
        raise FileExistsError(f"output folder {out} is not an earlier {what} (no {markers[0]}); --overwrite "
                              f"replaces only those. Choose another {option}")


def check_out_file(path: str | Path, *, overwrite: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output file that exists (unless `overwrite`) or is a folder."""
    path = Path(path)
    if path.is_dir():
        raise FileExistsError(f"{option} {str(path)!r} is a folder; pass a file path")
    if path.exists() and not overwrite:
        raise FileExistsError(f"{option} {str(path)!r} exists; pass --overwrite to replace it "
                              f"or choose another {option}")


@contextmanager
def staged_out_dir(out: str | Path, tag: str) -> Iterator[Path]:
    """Yield an empty folder `<out>.tmp-<tag>` beside `out` (one left by a killed run is cleared first). When the
    block ends without an error it takes `out`'s place; on an error it is removed and `out` stays as it was."""
    out = Path(out).resolve()  # "." or "a/.." has no name to put a sibling beside
    tmp = out.with_name(f"{out.name}.tmp-{tag}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # Move the earlier output aside before renaming the new one in, so that a kill between the two renames
    # leaves the earlier output on disk (as <out>.old-<tag>) rather than nothing.
    old = out.with_name(f"{out.name}.old-{tag}")
    if old.exists():
        shutil.rmtree(old)
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    shutil.rmtree(old, ignore_errors=True)
