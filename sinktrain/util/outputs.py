"""Outputs that never lose an earlier result.

One rule for every verb that writes a folder (export, stream-eval, zeroshot, streameval): a folder that already
holds files is replaced only when the user says so (`--overwrite`), only if it is an earlier output of the same
verb (it holds one of the verb's marker files), and, where the verb stages its output, only once the new output
is whole. Without the rule a second run into the same folder replaced the first one's results and left the
first one's per-configuration files beside the new ones, where they read as results of the second run. A verb
that writes one file (chat's transcript) refuses an existing one the same way.

One writer per output: a verb holds `output_lock` on its output for the whole run, so a second process writing the
same output (the same verb, or another one given the same --out) is refused at its start. Without it both passed
the checks, and the second cleared the first one's staging folder (or temporary shards, or transcript) under it:
one run's result was silently lost, a run that exited 0 left an empty data folder, or one failed with a path it
never named.

Readers and the writer of a dataset: a training holds `folder_lock` shared on its data folder while it runs, and
`data prepare` holds it exclusively while it replaces that folder's files. Without it `prepare --overwrite`
deleted the shards under a running training, whose data loader workers (and each validation) then opened the new
ones by name: the run went on, silently, on other data than its checkpoints record.
"""

from __future__ import annotations

import errno
import fcntl
import fnmatch
import glob
import os
import re
import shutil
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sinktrain.util.text_files import MISSING, file_problem, load_json


def check_out_dir(out: str | Path, *, overwrite: bool, markers: tuple[str, ...], what: str, own: tuple[str, ...],
                  option: str = "--out", is_earlier=None, inputs: dict[str, object] | None = None,
                  replaced: str = "once the new {what} is complete", staging: str | None = None) -> None:
    """Refuse, before any work, an output folder the run would lose data in. `markers`: names (files or folders)
    of which an earlier output of this verb holds at least one; `what` names the verb's output in the message.
    `is_earlier(out)`, where given, decides instead (a verb whose marker file is newer than some of its outputs
    recognises the older ones by their content). `own`: fnmatch patterns of every name the verb writes at the top
    of its folder; `--overwrite` replaces the whole folder, so one holding anything else (a user's notes, the model
    or text being evaluated) is refused, as is a folder holding one of `inputs` ({option: path or paths}).
    `replaced`: when the verb replaces it, as the refusal without --overwrite says. `staging`: the tag of the
    verb's staging folder `<out>.tmp-<tag>` (staged_out_dir), which the run clears as a killed run's leftover.
    The reverse, an output inside (or equal to) one of `inputs`, is refused too, new or not (check_out_outside)."""
    if inputs:
        check_out_outside(out, inputs, option)
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
    if staging is not None:
        _check_staging(out.parent / f"{out.name}.tmp-{staging}", what, own, option)
    if not out.exists() or not any(out.iterdir()):
        return
    if not overwrite:
        raise FileExistsError(f"output folder {out} exists and is not empty; pass --overwrite to replace it "
                              f"({replaced.format(what=what)}) or choose another {option}")
    for flag, paths in (inputs or {}).items():
        for path in paths if isinstance(paths, (list, tuple)) else [paths]:
            if path and Path(path).expanduser().exists() and \
                    Path(path).expanduser().resolve().is_relative_to(out.resolve()):
                raise FileExistsError(f"{flag} {str(path)!r} lies inside output folder {out}, which --overwrite "
                                      f"replaces whole; move it out of there or choose another {option}")
    if not (is_earlier(out) if is_earlier is not None else any((out / m).exists() for m in markers)):
        raise FileExistsError(f"output folder {out} is not an earlier {what} (no {markers[0]}); --overwrite "
                              f"replaces only those. Choose another {option}")
    foreign = _not_own(out, own)
    if foreign:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise FileExistsError(f"output folder {out} also holds {', '.join(map(repr, foreign[:3]))}{more}, which the "
                              f"{what} does not write; --overwrite replaces the whole folder, so move them out of it "
                              f"or choose another {option}")
    link = _first_link(out)
    if link is not None:  # a verb that writes in place (zeroshot) wrote through it, into the folder it points to
        raise FileExistsError(f"output folder {out}: {str(link.relative_to(out))!r} is a symbolic link (to "
                              f"{os.readlink(link)!r}); --overwrite would write through it: remove the link or choose "
                              f"another {option}")


def _not_own(folder: Path, own: tuple[str, ...]) -> list[str]:
    """The names in `folder` that match none of a verb's own patterns, sorted."""
    return sorted(p.name for p in folder.iterdir() if not any(fnmatch.fnmatchcase(p.name, pat) for pat in own))


def _first_link(folder: Path) -> Path | None:
    """The first symbolic link under `folder` (links to folders are not followed), or None."""
    for root, dirs, files in os.walk(folder):
        for name in sorted(dirs + files):
            if os.path.islink(os.path.join(root, name)):
                return Path(root) / name
    return None


def _check_staging(tmp: Path, what: str, own: tuple[str, ...], option: str) -> None:
    """The staging folder a run clears before it writes there: only a killed run's leftover (the verb's own names)
    may be there. A folder of the user's of that name was deleted, and a link made the run fail at its end."""
    if tmp.is_symlink() or (tmp.exists() and not tmp.is_dir()):
        kind = "symbolic link" if tmp.is_symlink() else "file"
        raise FileExistsError(f"{str(tmp)!r}, where the {what} is staged, is a {kind}, which sinktrain never makes "
                              f"there; remove it or choose another {option}")
    if tmp.is_dir():
        foreign = _not_own(tmp, own)
        if foreign:
            raise FileExistsError(f"{str(tmp)!r}, where the {what} is staged, holds {', '.join(map(repr, foreign[:3]))}"
                                  f", which the {what} does not write, so no killed run left it; move it away or "
                                  f"choose another {option}")


def read_marker(path: str | Path):
    """The JSON in a marker file of an earlier output (is_earlier), or None where it holds none to go by: missing,
    no regular file (reading a FIFO blocked forever), unreadable, not JSON, or nested too deeply for the parser
    (a RecursionError traceback)."""
    if file_problem(path) is not None:
        return None
    try:
        return load_json(path)
    except (OSError, ValueError):
        return None


def check_out_outside(out: str | Path, inputs: dict[str, object], option: str = "--out") -> None:
    """Refuse an output (folder or file) inside one of the run's input folders ({option: path or paths}), or one
    that is an input file, whether or not it exists yet: the run would write its results into a model folder or a
    dataset, or over the model, script or template it reads. check_out_dir runs it on its own inputs; called alone,
    it serves outputs that are no verb's folder (chat's transcript, a run dir)."""
    where = Path(out).expanduser().resolve()
    for flag, paths in inputs.items():
        for path in paths if isinstance(paths, (list, tuple)) else [paths]:
            given = Path(path).expanduser() if path else None
            if given is None or not given.exists():  # a hub id or zoo name: nothing on disk to write into
                continue
            if given.is_file() and where == given.resolve():
                raise FileExistsError(f"{option} {str(out)!r} is the {flag} file {str(path)!r}, which the run "
                                      f"reads; choose another {option}")
            if given.is_dir() and where.is_relative_to(given.resolve()):
                how = "is" if where == given.resolve() else "lies inside"
                raise FileExistsError(f"{option} {str(out)!r} {how} {flag} {str(path)!r}, which the run reads; "
                                      f"choose an {option} outside it")


def check_out_file(path: str | Path, *, overwrite: bool, option: str = "--out") -> None:
    """Refuse, before any work, an output file that exists (unless `overwrite`), is a folder or is no regular file."""
    if not str(path).strip():  # Path("") is ".", which was then called a folder
        raise ValueError(f"{option} is empty; give the output file's path")
    path = Path(path)
    if path.is_dir():
        raise FileExistsError(f"{option} {str(path)!r} is a folder; pass a file path")
    problem = file_problem(path)
    if problem not in (None, MISSING):  # a FIFO or a device (/dev/null as root) was replaced with a regular file
        raise FileExistsError(f"{option} {str(path)!r} {problem}; pass the path of a regular file or a new one")
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


def lock_path(out: str | Path) -> Path:
    """`<out>.lock` beside the output: a lock inside it would go when staged_out_dir replaces the folder."""
    out = Path(out).resolve()  # every spelling of one output ("x", "./x", a link to it) takes the same lock
    return out.with_name(f"{out.name}.lock")


def _missing_parents(folder: Path) -> list[Path]:
    """The folders of `folder`'s path that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


LOCK_TEXT = re.compile(r"pid \d+ on [^\n]*\n?")  # what _name_holder writes (a killed holder's file keeps it)


def _open(path: Path, out: Path, option: str) -> int:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link of that name had the holder's pid written into the file it points to (a model's
        # config), and then removed
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as e:  # a read-only mount (root is refused only there), no inode left
        if e.errno == errno.ELOOP:
            raise FileExistsError(f"{option} {str(out)!r}: its lock file {str(path)!r} is a symbolic link, which "
                                  f"sinktrain never makes; remove it or choose another {option}") from None
        raise type(e)(f"{option} {str(out)!r}: cannot write in {str(path.parent)!r} ({e.strerror}); "
                      f"choose a writable folder") from None


def _take(path: Path, out: Path, option: str) -> int:
    """An open descriptor of `path` holding its exclusive flock; FileExistsError naming the holder if taken."""
    while True:
        fd = _open(path, out, option)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "pid unknown"
            os.close(fd)
            raise FileExistsError(f"{option} {str(out)!r} is being written by another sinktrain process ({holder}); "
                                  f"wait for it to end, or choose another {option}") from None
        # The holder before us removes the file on release: if it did after our open, this lock is on a file
        # no later process can find. Take the one that is there now instead.
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            held = os.pread(fd, 300, 0).decode(errors="replace")
            if held and not LOCK_TEXT.fullmatch(held):  # a file of the user's: emptied, then removed at the end
                os.close(fd)
                raise FileExistsError(f"{option} {str(out)!r}: {str(path)!r} exists and is not a sinktrain lock "
                                      f"file; move it away or choose another {option}")
            return fd
        os.close(fd)


def _name_holder(fd: int) -> None:
    """The pid and host a refused process names; not needed for the lock, so a full disk does not stop the run."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    except OSError:
        pass


@contextmanager
def output_lock(out: str | Path, option: str = "--out") -> Iterator[None]:
    """Hold an exclusive lock on the output `out` (a folder or a file) for the block; a second holder is refused.
    Taken before check_out_dir/check_out_file, so that no other run can create the output between the check
    and the write. The lock file is removed when the block ends; the kernel drops the lock however the process
    ends (kill -9 included), so the file a killed run leaves is taken over, never waited on. Folders made for the
    lock file are removed again if the run left them empty (a refused run writes nothing)."""
    if not str(out).strip():  # Path("") is ".": the lock would land beside the working folder
        raise ValueError(f"{option} is empty; give the output's path")
    out = Path(out)
    path = lock_path(out)
    made = _missing_parents(path.parent)  # (lock_path resolves out: its parent is out's folder)
    nearest = made[-1].parent if made else path.parent
    if not nearest.is_dir():  # a file on the way: mkdir would fail with a bare errno line
        raise NotADirectoryError(f"{option} {str(out)!r}: {str(nearest)!r} is a file, not a folder; "
                                 f"choose another {option}")
    fd = _take(path, out, option)
    _name_holder(fd)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)  # before the lock goes: a process that opened the file meanwhile sees it gone
        os.close(fd)
        for folder in made:
            try:
                folder.rmdir()
            except OSError:  # the run wrote into it (or another process did): keep it
                break


@contextmanager
def folder_lock(folder: str | Path, *, exclusive: bool, refusal: str) -> Iterator[None]:
    """Hold a flock on the folder itself for the block, shared (a run reading it) or exclusive (a run replacing
    its files); FileExistsError(`refusal`) when the other kind is held. On the folder, not on a file beside it:
    a reader then needs no write permission (datasets on read-only mounts) and leaves nothing behind. Best effort:
    a folder that does not exist yet, or a file system that cannot lock a folder (NFS emulates flock with POSIX
    locks, and an exclusive one needs a descriptor open for writing), goes unlocked."""
    fd = None
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise FileExistsError(refusal) from None
    except OSError:
        if fd is not None:
            os.close(fd)
        fd = None
    try:
        yield
    finally:
        if fd is not None:
            os.close(fd)
