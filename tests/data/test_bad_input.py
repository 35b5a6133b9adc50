"""Bad input gives one clear error each; a failed or interrupted prepare leaves nothing that looks complete."""

import errno
import gzip
import os
import re
from pathlib import Path

import numpy as np
import pytest

import sinktrain.data.preparation as prepare_module
from sinktrain.data import TokenDataset, read_manifest

from data_helpers import cli, run_prepare, snapshot


def test_missing_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"source '.*nope\.txt' does not exist"):
        run_prepare([tmp_path / "nope.txt"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match=r"pattern '.*\*\.jsonl' matches no"):
        run_prepare([str(tmp_path / "*.jsonl")], tmp_path / "out")
    (tmp_path / "empty_folder").mkdir()
    # every extension and compression that is read (.text, .bz2, .xz and .zst were missing from the line)
    with pytest.raises(FileNotFoundError, match=re.escape(
            "holds no .txt/.text/.jsonl/.json/.parquet files (optionally .gz/.bz2/.xz/.zst)")):
        run_prepare([tmp_path / "empty_folder"], tmp_path / "out")
    with pytest.raises(FileNotFoundError, match="no manifest.json in"):
        TokenDataset(tmp_path / "empty_folder", sample_len=8)
    assert not (tmp_path / "out").exists()


def test_empty_files(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match=r"file '.*empty\.txt' is empty"):
        run_prepare([tmp_path / "empty.txt"], tmp_path / "out")
    with gzip.open(tmp_path / "blank.jsonl.gz", "wt") as f:
        f.write('{"text": ""}\n')
    with pytest.raises(ValueError, match=r"file '.*blank\.jsonl\.gz' is empty"):
        run_prepare([tmp_path / "blank.jsonl.gz"], tmp_path / "out")


@pytest.mark.parametrize("name, content", [("latin1.txt", b"caf\xe9 au lait\n"),
                                           ("latin1.jsonl", b'{"text": "caf\xe9"}\n')])
def test_non_utf8_names_the_file_and_leaves_no_shards(tmp_path, name, content):
    (tmp_path / "good.txt").write_text("A first, valid document.")
    (tmp_path / name).write_bytes(content)
    with pytest.raises(ValueError, match=rf"file '.*{name}' is not valid UTF-8 .*convert it first"):
        run_prepare([tmp_path / "good.txt", tmp_path / name], tmp_path / "out")
    assert not (tmp_path / "out").exists()  # tmp shards removed, and the folder the run made for them
    (tmp_path / "mine").mkdir()  # a folder the user made is kept, empty, as it was
    with pytest.raises(ValueError, match="is not valid UTF-8"):
        run_prepare([tmp_path / "good.txt", tmp_path / name], tmp_path / "mine")
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == []
    # Refused before tokenizing, so also where a document limit would stop before the file: it is a source all the
    # same, hashed and recorded in the manifest like the others.
    with pytest.raises(ValueError, match="is not valid UTF-8"):
        run_prepare([tmp_path / "good.txt", tmp_path / name], tmp_path / "out", max_documents=1)


@pytest.mark.parametrize("name, content, where", [
    ("z.txt", b"caf\xe9 au lait\n", "byte 0xe9 at offset 3)"),
    ("z.jsonl", b'{"text": "ok"}\n{"text": "caf\xe9"}\n', "byte 0xe9 at offset 28)"),
    ("z.txt.gz", gzip.compress(b"caf\xe9 au lait\n"), "byte 0xe9 at offset 3 of its decompressed text)"),
    ("z.txt.bz2", b"BZh9 not a bzip2 stream", "could not be read as text (OSError: Invalid data stream)"),
], ids=["txt", "jsonl", "gz", "garbage-bz2"])
def test_a_source_that_is_not_utf8_is_refused_before_anything_is_tokenized(tmp_path, persuasion, capsys, monkeypatch,
                                                                            name, content, where):
    """A Latin-1 file was found only when its turn came: after every source before it was tokenized."""
    (tmp_path / "big.txt").write_text(persuasion)
    (tmp_path / name).write_bytes(content)
    monkeypatch.setattr(prepare_module, "iter_documents", lambda *a, **k: pytest.fail("tokenizing started"))
    code, err = cli(capsys, "data", "prepare", "--sources", f"[{tmp_path / 'big.txt'}, {tmp_path / name}]",
                    "--out_dir", str(tmp_path / "out"), "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith(f"sinktrain data prepare: error: file {str(tmp_path / name)!r} ") and where in err
    assert err.endswith("; fix or remove it from the sources" if "could not be read" in where else
                        "; convert it first (e.g. iconv -f latin1 -t utf-8)")
    assert ("is not valid UTF-8 (" in err) != ("could not be read" in where)
    assert not (tmp_path / "out").exists()


def test_wrong_text_field(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"body": "hello"}\n')
    with pytest.raises(ValueError, match="has no field 'text' \\(fields: body\\); pass --text-field"):
        run_prepare([tmp_path / "a.jsonl"], tmp_path / "out")
    m = read_manifest(run_prepare([tmp_path / "a.jsonl"], tmp_path / "out", text_field="body", val_fraction=0))
    assert m["splits"]["train"]["documents"] == 1


def test_vocab_too_large_for_uint16(tmp_path, big_vocab_tokenizer_path):
    (tmp_path / "doc.txt").write_text("w69999 w1 w65536")
    with pytest.raises(ValueError, match="vocabulary of 70001 ids does not fit uint16"):
        run_prepare([tmp_path / "doc.txt"], tmp_path / "u16", tokenizer=str(big_vocab_tokenizer_path), dtype="uint16")
    out = run_prepare([tmp_path / "doc.txt"], tmp_path / "auto", tokenizer=str(big_vocab_tokenizer_path),
                      val_fraction=0)
    m = read_manifest(out)
    assert m["dtype"] == "uint32" and m["tokenizer"]["vocab_size"] == 70001
    np.testing.assert_array_equal(np.fromfile(out / "train-00000.bin", dtype=np.uint32), [69999, 1, 65536, 0])
    ds = TokenDataset(out, sample_len=4)
    assert ds.sequential(0).tolist() == [69999, 1, 65536, 0]
    with pytest.raises(ValueError, match="70001-id vocabulary but the model expects 50277"):
        ds.check_compatible(50277)


def test_interrupted_prepare_leaves_nothing_complete(tmp_path, persuasion, monkeypatch):
    (tmp_path / "book.txt").write_text(persuasion[:50000])
    out = run_prepare([tmp_path / "book.txt"], tmp_path / "out", txt_documents="paragraphs")
    assert (out / "manifest.json").is_file()
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    # Crash mid-stream while redoing it: the new shards never got their names, and the earlier dataset, which is
    # only deleted once the new shards are all written, is as it was.
    real = prepare_module.ShardWriter.write_document
    calls = {"n": 0}

    def crash_after_some(self, ids):
        calls["n"] += 1
        if calls["n"] == 50:
            raise KeyboardInterrupt
        return real(self, ids)

    monkeypatch.setattr(prepare_module.ShardWriter, "write_document", crash_after_some)
    with pytest.raises(KeyboardInterrupt):
        run_prepare([tmp_path / "book.txt"], out, txt_documents="paragraphs", seed=5, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not list(out.glob("*.tmp"))
    monkeypatch.undo()

    # Crash after the shards are renamed but before the new manifest is: still not a dataset.
    real_replace = prepare_module.os.replace

    def no_manifest(src, dst):
        if str(dst).endswith("manifest.json"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(prepare_module.os, "replace", no_manifest)
    with pytest.raises(KeyboardInterrupt):
        run_prepare([tmp_path / "book.txt"], out, txt_documents="paragraphs", seed=5, overwrite=True)
    monkeypatch.undo()
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="an interrupted prepare leaves none; run it again"):
        TokenDataset(out, sample_len=16)


def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("fails", ["tokenizer", "manifest"])
def test_an_overwrite_that_cannot_save_its_tokenizer_or_manifest_keeps_the_earlier_dataset(
        tmp_path, persuasion, capsys, monkeypatch, fails):
    """--overwrite deleted the earlier dataset before it saved the new tokenizer and manifest: a full disk there
    left neither dataset."""
    from transformers import PreTrainedTokenizerFast

    (tmp_path / "book.txt").write_text(persuasion[:20000])
    out = run_prepare([tmp_path / "book.txt"], tmp_path / "out", txt_documents="paragraphs")
    before = snapshot(out)

    def half_saved(self, folder, *args, **kwargs):  # a file or two got out before the disk filled up
        Path(folder).mkdir()
        (Path(folder) / "tokenizer.json").write_text('{"trunc')
        _full_disk()

    if fails == "tokenizer":
        monkeypatch.setattr(PreTrainedTokenizerFast, "save_pretrained", half_saved)
    else:
        monkeypatch.setattr(prepare_module, "_write_manifest_tmp", _full_disk)
    code, err = cli(capsys, "data", "prepare", "--sources", str(tmp_path / "book.txt"), "--out_dir", str(out),
                    "--txt_documents", "paragraphs", "--seed", "5", "--overwrite", "true", "--progress", "false")
    assert code == 2 and err == ("sinktrain data prepare: error: [Errno 28] No space left on device; free space on "
                                 "that disk (or write the output to another one) and run again")
    assert snapshot(out) == before  # the earlier dataset, whole; nothing of the new one (no .tmp) beside it
    assert TokenDataset(out, sample_len=16).num_tokens == read_manifest(out)["splits"]["train"]["tokens"]


def test_a_failure_after_the_earlier_dataset_is_removed_says_so(tmp_path, persuasion, capsys, monkeypatch):
    (tmp_path / "book.txt").write_text(persuasion[:20000])
    out = run_prepare([tmp_path / "book.txt"], tmp_path / "out", txt_documents="paragraphs")
    real_replace = prepare_module.os.replace

    def fail_on_tokenizer(src, dst):
        if Path(dst).name == "tokenizer":
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(prepare_module.os, "replace", fail_on_tokenizer)
    code, err = cli(capsys, "data", "prepare", "--sources", str(tmp_path / "book.txt"), "--out_dir", str(out),
                    "--txt_documents", "paragraphs", "--seed", "5", "--overwrite", "true", "--progress", "false")
    assert code == 2 and err == (
        f"sinktrain data prepare: error: the earlier dataset in {str(out)!r} was removed, but the new one could not "
        f"be put in its place ([Errno 13] Permission denied: {str(out / 'tokenizer')!r}); prepare it again")
    monkeypatch.undo()
    assert not (out / "manifest.json").exists() and not list(out.glob("*.tmp*"))
    assert read_manifest(run_prepare([tmp_path / "book.txt"], out, txt_documents="paragraphs", seed=5))["seed"] == 5


def test_truncated_shard_is_refused(tmp_path):
    (tmp_path / "doc.txt").write_text("Some text that becomes a few tokens. " * 20)
    out = run_prepare([tmp_path / "doc.txt"], tmp_path / "out", val_fraction=0)
    shard = out / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(ValueError, match="train shards hold .* tokens but the manifest says"):
        TokenDataset(out, sample_len=8)


def test_bad_config_values(tmp_path):
    with pytest.raises(ValueError, match="no sources given"):
        run_prepare([], tmp_path / "out")
    with pytest.raises(ValueError, match="val_fraction must be >= 0 and < 1, got 1.5"):
        run_prepare(["x.txt"], tmp_path / "out", val_fraction=1.5)
    with pytest.raises(ValueError, match="txt_documents must be one of file, paragraphs, lines"):
        run_prepare(["x.txt"], tmp_path / "out", txt_documents="pages")
    with pytest.raises(ValueError, match="fewer than one sample of 4096"):
        (tmp_path / "doc.txt").write_text("short")
        TokenDataset(run_prepare([tmp_path / "doc.txt"], tmp_path / "out", val_fraction=0), sample_len=4096)


def test_a_folder_of_texts_is_not_called_an_interrupted_prepare(tmp_path):
    """`sinktrain data info data/books`: the books' folder never held a prepared dataset."""
    (tmp_path / "book.txt").write_text("A book.")
    with pytest.raises(FileNotFoundError) as caught:
        TokenDataset(tmp_path, sample_len=16)
    assert str(caught.value) == (
        f"no manifest.json in {str(tmp_path)!r} (it is not a prepared data folder: `sinktrain data prepare --sources "
        f"TEXTS` makes one); run `sinktrain data prepare --out_dir {tmp_path}` first")
