"""Careless or hostile input to `sinktrain data`: one clear line naming the file, exit 2, nothing of the user's lost."""

import gzip
import json

import pytest

from sinktrain.data import load_tokenizer, read_manifest

from data_helpers import cli as _cli, run_prepare, snapshot as _snapshot


def test_prepare_refuses_a_users_folder_and_deletes_nothing(tmp_path, capsys):
    (tmp_path / "doc.txt").write_text("A short document for the dataset. " * 20)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "train-weights.bin").write_bytes(b"precious")  # matches the old train-*.bin glob
    (mine / "notes.md").write_text("keep me")
    before = _snapshot(mine)
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / "doc.txt"),
                     "--out_dir", str(mine), "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1
    assert "not empty and not a sinktrain dataset" in err and "train-weights.bin" in err
    assert _snapshot(mine) == before
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / "doc.txt"),
                     "--out_dir", str(mine), "--progress", "false",
                     "--overwrite")
    assert code == 2 and _snapshot(mine) == before


def test_overwrite_of_a_dataset_keeps_files_that_are_not_its_own(tmp_path):
    (tmp_path / "doc.txt").write_text("A short document for the dataset. " * 20)
    out = run_prepare([tmp_path / "doc.txt"], tmp_path / "out", val_fraction=0)
    (out / "train-weights.bin").write_bytes(b"precious")
    run_prepare([tmp_path / "doc.txt"], out, val_fraction=0, seed=7, overwrite=True)
    assert (out / "train-weights.bin").read_bytes() == b"precious"
    assert read_manifest(out)["seed"] == 7


def test_records_without_the_text_field_are_counted_not_silently_dropped(tmp_path, capsys):
    records = [{"text": "the one record with text"}] + [{"body": f"record {i}"} for i in range(999)]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / "a.jsonl"),
                     "--out_dir", str(tmp_path / "out"),
                     "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1
    assert "999 of 1,000 records have no field 'text'" in err and "a.jsonl" in err and "--text-field" in err
    assert not (tmp_path / "out" / "manifest.json").exists()


def test_a_few_records_without_the_field_are_skipped_with_a_warning(tmp_path, capsys):
    records = [{"text": f"document number {i}"} for i in range(300)] + [{"meta": "header"}]
    (tmp_path / "a.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    m = read_manifest(run_prepare([tmp_path / "a.jsonl"], tmp_path / "out", val_fraction=0))
    assert m["splits"]["train"]["documents"] == 300
    assert "skipped 1 of 301 records" in capsys.readouterr().err


def _truncated_gz(path):
    data = gzip.compress("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(3000)).encode())
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("name, write", [
    ("malformed.jsonl", lambda p: p.write_text('{"text": "a"}\n{"text": "b"\n{"text": "c"}\n')),
    ("garbage.parquet", lambda p: p.write_bytes(b"not a parquet file" * 10)),
    ("truncated.jsonl.gz", _truncated_gz),
    ("garbage.txt.gz", lambda p: p.write_bytes(b"\x1f\x8b this is no gzip stream")),
], ids=["malformed-jsonl", "garbage-parquet", "truncated-gz", "garbage-gz"])
def test_unreadable_files_are_one_line_naming_the_file(tmp_path, capsys, name, write):
    write(tmp_path / name)
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / name), "--out_dir", str(tmp_path / "out"),
                     "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1, err
    assert name in err and ("could not be read" in err or "not valid UTF-8" in err)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("content", ["{not json", "[1, 2]", '{"format": "other/1"}'])
def test_garbage_manifest_names_the_file(tmp_path, capsys, content):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "manifest.json").write_text(content)
    code, err = _cli(capsys, "data", "info", str(tmp_path / "d"))
    assert code == 2 and len(err.splitlines()) == 1 and "manifest.json" in err and "prepare the data again" in err


@pytest.mark.parametrize("spec", ["tokenizers/mine", "no such tokenizer", "a/b/c"])
def test_a_missing_tokenizer_path_is_a_local_error_at_once(tmp_path, monkeypatch, spec):
    # The hub path would end in "could not be loaded" (after a minute of retries when online); a path-like name
    # is refused before any hub call.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tokenizers").mkdir()
    with pytest.raises(FileNotFoundError, match="does not exist; pass a tokenizer.json path"):
        load_tokenizer(spec)


def test_a_garbage_tokenizer_file_is_one_line(tmp_path, capsys):
    (tmp_path / "doc.txt").write_text("text")
    (tmp_path / "tok.json").write_text("{garbage")
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / "doc.txt"),
                     "--out_dir", str(tmp_path / "out"),
                     "--tokenizer", str(tmp_path / "tok.json"), "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1 and "tok.json" in err and "could not be loaded" in err
    assert not (tmp_path / "out").exists()


def test_an_out_path_under_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "doc.txt").write_text("text")
    (tmp_path / "afile").write_text("mine")
    code, err = _cli(capsys, "data", "prepare", "--sources", str(tmp_path / "doc.txt"),
                     "--out_dir", str(tmp_path / "afile" / "sub"), "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1
    assert "afile' is a file, not a folder; choose another --out_dir" in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_a_garbage_yaml_config_is_one_line_naming_it(tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("sources: [a.txt, b.txt\n")
    code, err = _cli(capsys, "data", "prepare", "--config", str(tmp_path / "bad.yaml"))
    assert code == 2 and len(err.splitlines()) == 1 and "bad.yaml is not valid YAML" in err and "line 2" in err


def test_hub_records_without_the_text_field_are_counted(tmp_path, capsys):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "repo" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": ["one document"] + [None] * 9}),
                   tmp_path / "repo" / "data" / "train-00000-of-00001.parquet")
    code, err = _cli(capsys, "data", "prepare", "--sources", f"hub:{tmp_path / 'repo'}",
                     "--out_dir", str(tmp_path / "out"),
                     "--progress", "false")
    assert code == 2 and len(err.splitlines()) == 1 and "9 of 10 records have no field 'text'" in err


def test_overwrite_with_a_source_that_fails_keeps_the_earlier_dataset(tmp_path, capsys):
    (tmp_path / "doc.txt").write_text("A short document for the dataset. " * 20)
    (tmp_path / "latin.txt").write_bytes(("Un caf\xe9 noir. " * 50).encode("latin-1"))
    out = run_prepare([tmp_path / "doc.txt"], tmp_path / "out", val_fraction=0)
    before = _snapshot(out)
    # The failing file comes second: the first source's shards were already being written when it fails.
    sources = json.dumps([str(tmp_path / "doc.txt"), str(tmp_path / "latin.txt")])
    code, err = _cli(capsys, "data", "prepare", "--sources", sources, "--out_dir", str(out), "--progress", "false",
                     "--overwrite")
    assert code == 2 and len(err.splitlines()) == 1
    assert f"file {str(tmp_path / 'latin.txt')!r} is not valid UTF-8" in err
    assert _snapshot(out) == before
    assert read_manifest(out)["sources"][0]["documents"] > 0 and not list(out.glob("*.tmp"))
