"""The hub-name path end to end on a local dataset repo, and the `sinktrain data` verbs."""

import argparse
import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from sinktrain.data import TokenDataset, read_manifest
from sinktrain.data import cli as data_cli

from data_helpers import count_tokens, run_prepare


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


def test_unknown_dataset_name_is_one_clear_error(tmp_path):
    # Offline (tests/conftest.py): a hub name that is not local fails with a sentence naming it.
    with pytest.raises(FileNotFoundError, match="'no-such-org/no-such-dataset' is neither a local path nor a loadable"):
        run_prepare(["no-such-org/no-such-dataset"], tmp_path / "out")


def run_cli(argv) -> int:
    parser = argparse.ArgumentParser(prog="sinktrain")
    data_cli.register(parser.add_subparsers(dest="verb", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_flags_and_yaml_give_the_same_dataset(tmp_path, persuasion, capsys):
    (tmp_path / "a.txt").write_text(persuasion[:20000])
    (tmp_path / "b.txt").write_text(persuasion[20000:40000])
    flags = ["data", "prepare", "--source", str(tmp_path / "a.txt"), "--source", str(tmp_path / "b.txt"),
             "--txt-documents", "paragraphs", "--val-fraction", "0.2", "--seed", "9", "--quiet"]
    assert run_cli([*flags, "--out", str(tmp_path / "flags")]) == 0
    recipe = {"data": {"sources": [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], "txt_documents": "paragraphs",
                       "val_fraction": 0.2, "seed": 1, "out_dir": str(tmp_path / "ignored")}}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    # Flags override the YAML (seed, out).
    assert run_cli(["data", "prepare", "--config", str(tmp_path / "recipe.yaml"), "--seed", "9",
                    "--out", str(tmp_path / "yaml"), "--quiet"]) == 0
    assert not (tmp_path / "ignored").exists()
    for split in ("train", "val"):
        assert (tmp_path / "flags" / f"{split}-00000.bin").read_bytes() == \
            (tmp_path / "yaml" / f"{split}-00000.bin").read_bytes()
    capsys.readouterr()
    assert run_cli(["data", "info", str(tmp_path / "yaml")]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["seed"] == 9 and info["splits"]["val"]["documents"] > 0

    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sources": ["x.txt"], "out": "y"}))
    with pytest.raises(ValueError, match="unknown key\\(s\\) 'out'; accepted keys: sources, out_dir"):
        run_cli(["data", "prepare", "--config", str(tmp_path / "bad.yaml")])
