"""The hub-name path end to end on a local dataset repo, and the `sinktrain data` verbs."""

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sinktrain.data import TokenDataset, read_manifest
from sinktrain.cli import main
from sinktrain.data.preparation import usable_cpus

from sinktrain.util.hashing import file_sha256

from data_helpers import count_tokens, run_prepare, snapshot


@pytest.fixture
def dataset_repo(tmp_path, persuasion):
    """A folder laid out like a hub dataset repo: data/train-*.parquet and data/validation-*.parquet."""
    chapters = persuasion.split("Chapter ")[1:7]
    (tmp_path / "repo" / "data").mkdir(parents=True)
    pq.write_table(pa.table({"content": chapters[:2], "meta": ["a", "b"]}),
                   tmp_path / "repo" / "data" / "train-00000-of-00002.parquet")
    pq.write_table(pa.table({"content": chapters[2:4], "meta": ["c", "d"]}),
                   tmp_path / "repo" / "data" / "train-00001-of-00002.parquet")
    pq.write_table(pa.table({"content": chapters[4:], "meta": ["e", "f"]}),
                   tmp_path / "repo" / "data" / "validation-00000-of-00001.parquet")
    return tmp_path / "repo", chapters


def test_hub_name_goes_through_load_dataset_streaming(tmp_path, dataset_repo, raw_tok, monkeypatch):
    repo, chapters = dataset_repo
    calls = []
    real = datasets.load_dataset

    def spy(path, *args, **kwargs):
        calls.append((path, args, kwargs))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    for split, docs in (("train", chapters[:4]), ("validation", chapters[4:])):
        out = run_prepare([f"hub:{repo}"], tmp_path / split, split=split, text_field="content", val_fraction=0)
        m = read_manifest(out)
        assert m["splits"]["train"]["documents"] == len(docs)
        assert m["splits"]["train"]["tokens"] == count_tokens(raw_tok, docs)
        assert m["sources"][0]["kind"] == "hub"
        # Exactly the call a hub name like EleutherAI/the_pile_deduplicated makes.
        assert calls[-1] == (str(repo), (None,), {"split": split, "streaming": True})
    ds = TokenDataset(tmp_path / "validation", sample_len=100)
    assert raw_tok.decode(ds.sequential(0).tolist()) == chapters[4][: len(raw_tok.decode(ds.sequential(0).tolist()))]


def test_a_local_dataset_folder_that_changes_is_not_the_same_dataset(tmp_path, dataset_repo, capsys):
    """A hub: source was known by its name only: a local dataset folder rewritten since was called the same data."""
    repo, chapters = dataset_repo
    out = run_prepare([f"hub:{repo}"], tmp_path / "out", text_field="content", val_fraction=0)
    shard = repo / "data" / "train-00001-of-00002.parquet"
    assert read_manifest(out)["sources"][0]["files"][1] == {
        "path": str(shard), "bytes": shard.stat().st_size, "sha256": file_sha256(shard)}
    capsys.readouterr()
    run_prepare([f"hub:{repo}"], out, text_field="content", val_fraction=0, progress=True)
    assert "nothing to do" in capsys.readouterr().err
    before = snapshot(out)
    pq.write_table(pa.table({"content": chapters[3:1:-1], "meta": ["d", "c"]}), shard)  # the same rows, reordered
    with pytest.raises(FileExistsError, match="holds a dataset prepared from other sources or settings"):
        run_prepare([f"hub:{repo}"], out, text_field="content", val_fraction=0)
    assert snapshot(out) == before

    # A manifest from before these hashes: compared by the name, as then.
    manifest = read_manifest(out)
    del manifest["sources"][0]["files"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    run_prepare([f"hub:{repo}"], out, text_field="content", val_fraction=0, progress=True)
    assert "nothing to do" in capsys.readouterr().err


def test_unknown_dataset_name_is_one_clear_error(tmp_path):
    # Offline (tests/conftest.py): a hub name that is not local fails with a sentence naming it.
    with pytest.raises(FileNotFoundError, match="'no-such-org/no-such-dataset' is neither a local path nor a loadable"):
        run_prepare(["no-such-org/no-such-dataset"], tmp_path / "out")


def test_cli_flags_and_yaml_give_the_same_dataset(tmp_path, persuasion, capsys):
    (tmp_path / "a.txt").write_text(persuasion[:20000])
    (tmp_path / "b.txt").write_text(persuasion[20000:40000])
    sources = f"[{tmp_path / 'a.txt'}, {tmp_path / 'b.txt'}]"
    flags = ["data", "prepare", "--sources", sources, "--txt-documents", "paragraphs", "--val_fraction", "0.2",
             "--set", "seed=9", "--progress", "false"]
    assert main([*flags, "--out_dir", str(tmp_path / "flags")]) == 0
    recipe = {"sources": [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], "txt_documents": "paragraphs",
              "val_fraction": 0.2, "seed": 1, "out_dir": str(tmp_path / "ignored"), "progress": False}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    # Overrides after --config win (seed, out_dir).
    assert main(["data", "prepare", "--config", str(tmp_path / "recipe.yaml"), "--seed", "9",
                 "--out_dir", str(tmp_path / "yaml")]) == 0
    assert not (tmp_path / "ignored").exists()
    for split in ("train", "val"):
        assert (tmp_path / "flags" / f"{split}-00000.bin").read_bytes() == \
            (tmp_path / "yaml" / f"{split}-00000.bin").read_bytes()
    capsys.readouterr()
    assert main(["data", "info", str(tmp_path / "yaml")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["seed"] == 9 and info["splits"]["val"]["documents"] > 0

    # Unknown key, wrong type, out of range: one line each, exit 2, nothing written.
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sources": ["x.txt"], "out": "y"}))
    for argv, message in [
        (["--config", str(tmp_path / "bad.yaml")], "'out'"),
        ([*flags, "--out_dir", str(tmp_path / "new"), "--set", "num_workers=two"],
         "num_workers: expected int, got 'two'"),
        ([*flags, "--out_dir", str(tmp_path / "new"), "--val_fraction", "1.5"],
         "val_fraction must be >= 0 and < 1, got 1.5"),
        ([*flags, "--out_dir", str(tmp_path / "new"), "--num_workers", "100000"],  # each worker starts at once
         f"num_workers 100000 is more than the {usable_cpus()} CPUs this process may use; set at most "
         f"{usable_cpus()} (0 tokenizes in this process, on the tokenizer's own threads)"),
    ]:
        capsys.readouterr()
        assert main(["data", "prepare", *argv] if argv[0] == "--config" else argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("sinktrain data prepare: error: ") and message in err and err.count("\n") == 1, err
    assert not (tmp_path / "new").exists() and not (tmp_path / "y").exists()
