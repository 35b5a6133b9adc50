"""Careless or hostile export targets: refused in one line, and the training run (or anything else) kept."""

import shutil
import stat
from pathlib import Path

import pytest

from sinktrain.cli import main

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A 2-step single-device run of recipes/tiny-cpu.yaml (one checkpoint)."""
    from sinktrain.data import PrepareConfig, prepare
    from sinktrain.train import load_train_config, train

    root = tmp_path_factory.mktemp("export-hostile")
    data = prepare(PrepareConfig(sources=[str(REPO / "data/books/austen_persuasion.txt")], out_dir=str(root / "data"),
                                 txt_documents="paragraphs", val_fraction=0.05, progress=False))
    sets = [f"data.dir={data}", "trainer.max_steps=2", "checkpoint.every=2", "trainer.val_every=0",
            "logging.sink_score_every=0"]
    return train(load_train_config(REPO / "recipes/tiny-cpu.yaml", sets, run_dir=str(root / "run")))


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("target", ["run", "parent", "inside", "checkpoint-parent"])
def test_an_export_target_that_holds_or_lies_in_the_run_is_refused(tiny_run, tmp_path, capsys, target):
    run = tmp_path / "box" / "run"
    shutil.copytree(tiny_run, run)
    source, out = {
        "run": (run, run),
        "parent": (run, run.parent),
        "inside": (run, run / "export"),
        "checkpoint-parent": (run / "checkpoints" / "step-00000002", run / "checkpoints"),
    }[target]
    before = snapshot(run.parent)
    assert main(["export", str(source), str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "the run being exported" in err and "Choose an out_dir outside the run" in err
    assert snapshot(run.parent) == before


def test_overwrite_replaces_only_an_earlier_export(tiny_run, tmp_path, capsys):
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert main(["export", str(tiny_run), str(other), "--overwrite"]) == 2
    assert "is not an earlier export" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "mine"
    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), str(out)]) == 0
    assert main(["export", str(tiny_run), str(out), "--overwrite"]) == 0


def test_every_exported_file_has_the_usual_mode(tiny_run, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), str(out)]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {modes["config.json"]}, modes  # model.safetensors was 0600, the rest 0644


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("{garbage", "is not valid JSON"),
                                              ("[1, 2]", "is not a stream-eval results.json")])
def test_bad_eval_results_fail_before_anything_is_written(tiny_run, tmp_path, capsys, content, message):
    results = tmp_path / "results.json"
    if content is not None:
        results.write_text(content)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--eval-results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--eval-results" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["results.json"] if content is not None else [])
