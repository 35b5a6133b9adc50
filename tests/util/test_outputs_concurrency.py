"""One writer per output (sinktrain.util.outputs.output_lock): a second process writing the same output is refused
in one line naming the holder, a lock a killed run left is taken over, and a refused run leaves nothing behind.
Also the environment's refusals the lock meets first: a file where a folder is expected, a read-only folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from sinktrain.util.outputs import lock_path, output_lock

HOLDER = """
import sys
from sinktrain.util.outputs import output_lock
with output_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (or kills this process)
"""


def start_holder(out: Path) -> subprocess.Popen:
    """Another process holding `out`'s lock (returns once it holds it: no waiting on a clock)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout.readline() == "held\n"
    return proc


def test_a_second_writer_is_refused_naming_the_holder_and_may_write_once_it_ends(tmp_path):
    out = tmp_path / "eval"
    holder = start_holder(out)
    try:
        with pytest.raises(FileExistsError) as refused, output_lock(out):
            pass
        assert str(refused.value) == (f"--out {str(out)!r} is being written by another sinktrain process (pid "
                                      f"{holder.pid} on {os.uname().nodename}); wait for it to end, or choose "
                                      f"another --out")
    finally:
        holder.communicate("")  # closing its stdin ends it
    assert holder.returncode == 0 and not lock_path(out).exists()  # the holder removed its lock file
    with output_lock(out):
        assert lock_path(out).is_file()
    assert list(tmp_path.iterdir()) == []


def test_the_lock_a_killed_run_left_is_taken_over(tmp_path):
    out = tmp_path / "eval"
    holder = start_holder(out)
    holder.send_signal(signal.SIGKILL)
    holder.communicate()
    assert lock_path(out).is_file()  # kill -9 leaves the file; the kernel dropped the lock
    with output_lock(out):
        pass
    assert list(tmp_path.iterdir()) == []


def test_every_spelling_of_an_output_takes_one_lock(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "a")
    with output_lock(tmp_path / "a" / "eval"):
        for other in (tmp_path / "a" / "x" / ".." / "eval", tmp_path / "link" / "eval"):
            with pytest.raises(FileExistsError, match="is being written by another sinktrain process"), \
                    output_lock(other):
                pass


def test_a_refused_run_leaves_neither_the_lock_nor_the_folders_made_for_it(tmp_path):
    out = tmp_path / "new" / "deeper" / "eval"
    with pytest.raises(ValueError, match="bad input"), output_lock(out):
        assert lock_path(out).is_file()
        raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []
    with output_lock(out):  # a run that wrote its output keeps the folders
        out.mkdir()
    assert [p.name for p in (tmp_path / "new" / "deeper").iterdir()] == ["eval"]


@pytest.mark.parametrize("under", ["file/eval", "file/sub/eval"])
def test_an_output_under_a_file_is_one_line_before_any_work(tmp_path, under):
    (tmp_path / "file").write_text("mine")
    with pytest.raises(NotADirectoryError) as refused, output_lock(tmp_path / under, option="out_dir"):
        pass
    assert str(refused.value) == (f"out_dir {str(tmp_path / under)!r}: {str(tmp_path / 'file')!r} is a file, not a "
                                  f"folder; choose another out_dir")
    assert [p.name for p in tmp_path.iterdir()] == ["file"] and (tmp_path / "file").read_text() == "mine"


@pytest.fixture
def read_only(tmp_path):
    """A read-only bind mount of a folder (root writes through file modes, not through a read-only mount)."""
    folder = tmp_path / "ro"
    folder.mkdir()
    bind = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if bind.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root): a read-only folder is tested where it can be")
    try:
        if subprocess.run(["mount", "-o", "remount,bind,ro", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_an_output_in_a_read_only_folder_is_one_line_before_any_work(read_only):
    out = read_only / "eval"
    with pytest.raises(OSError) as refused, output_lock(out):
        pass
    assert str(refused.value) == (f"--out {str(out)!r}: cannot write in {str(read_only)!r} (Read-only file system); "
                                  f"choose a writable folder")


def test_an_empty_output_is_refused_without_a_lock_beside_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="^--out is empty; give the output's path$"), output_lock(""):
        pass
    assert not (tmp_path.parent / f"{tmp_path.name}.lock").exists()
