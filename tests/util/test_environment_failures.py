"""The machine fails, not the input: a full disk while a verb writes is one line naming the fix, exit 2, and the
earlier output as it was (no temporary files left taking the space). The full-disk cases run on a small tmpfs
(root only; skipped elsewhere)."""

from __future__ import annotations

import errno
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import sinktrain.data
from sinktrain.cli import main
from sinktrain.data.preparation import ShardWriter

BOOK = Path(__file__).resolve().parents[2] / "data" / "books" / "austen_persuasion.txt"
FULL_DISK = "[Errno 28] No space left on device; free space on that disk (or write the output to another one) and " \
            "run again"


def prepare(out: Path, *extra: str) -> int:
    return main(["data", "prepare", "--sources", str(BOOK), "--out_dir", str(out), "--txt_documents", "paragraphs",
                 "--progress", "false", *extra])


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MB tmpfs; `fill(leave)` fills it up to `leave` free bytes."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4M", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root): the full-disk cases are tested where it can be")

    def fill(leave: int) -> None:
        st = os.statvfs(disk)
        (disk / "filler").write_bytes(b"\0" * max(st.f_bavail * st.f_frsize - leave, 0))

    try:
        yield disk, fill
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def test_a_full_disk_while_overwriting_keeps_the_earlier_dataset_and_no_partial_shards(small_disk, capsys):
    disk, fill = small_disk
    out = disk / "data"
    assert prepare(out) == 0
    earlier = snapshot(out)
    fill(leave=50_000)  # the shards need about 230 kB
    capsys.readouterr()
    assert prepare(out, "--overwrite", "true") == 2
    assert one_line(capsys) == f"sinktrain data prepare: error: {FULL_DISK}"
    assert snapshot(out) == earlier  # the earlier dataset, and no .tmp shard holding the little space left


def test_a_full_disk_while_saving_the_tokenizer_is_one_line(small_disk, capsys):
    disk, fill = small_disk
    fill(leave=1_000_000)  # the shards fit, the tokenizer (2 MB) does not; the tokenizers library raises Exception
    assert prepare(disk / "data") == 2
    assert one_line(capsys) == f"sinktrain data prepare: error: {FULL_DISK}"


def test_the_tokenizers_librarys_write_errors_are_os_errors(tmp_path, monkeypatch, capsys):
    def rust_write_fails(cfg):
        raise Exception("No space left on device (os error 28)")

    monkeypatch.setattr(sinktrain.data, "prepare", rust_write_fails)
    assert prepare(tmp_path / "data") == 2
    assert one_line(capsys) == f"sinktrain data prepare: error: {FULL_DISK}"

    def internal_error(cfg):  # any other bare Exception is still an internal error, with its traceback
        raise Exception("a bug")

    monkeypatch.setattr(sinktrain.data, "prepare", internal_error)
    with pytest.raises(Exception, match="a bug"):
        prepare(tmp_path / "data")


class FullOnClose:
    """A shard file whose buffered bytes do not fit on the disk when it is closed."""

    def __init__(self, file):
        self.file = file

    def close(self):
        self.file.close()
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_an_aborted_shard_writer_removes_its_files_even_when_closing_fails(tmp_path):
    writer = ShardWriter(tmp_path, "train", "uint16", shard_tokens=4)
    writer.write_document(np.arange(10))  # shards 0 and 1 closed, shard 2 open
    writer._file = FullOnClose(writer._file)
    writer.abort()
    assert list(tmp_path.iterdir()) == []
