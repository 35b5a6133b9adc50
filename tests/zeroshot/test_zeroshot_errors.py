"""Bad input: one line naming the problem and the fix, exit 2, and nothing written."""

from __future__ import annotations

import shutil

import pytest

from sinktrain.cli import main
from zeroshot_helpers import SAMPLE


def refused(capsys, argv: list[str]) -> str:
    assert main(["zeroshot", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_unknown_task_lists_the_known_ones(model_dirs, tmp_path, capsys):
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa,mmlu", "--out", str(tmp_path / "o")])
    assert "unknown zero-shot task 'mmlu'" in err
    assert "arc_challenge,arc_easy,hellaswag,lambada_openai,openbookqa,piqa,winogrande" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["folder", "state.json", "arrow"])
def test_data_dir_missing_a_tasks_files(model_dirs, tmp_path, capsys, damage):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    folder = data / "ai2_arc/ARC-Easy/validation"
    if damage == "folder":
        shutil.rmtree(folder)
    elif damage == "state.json":
        (folder / "state.json").unlink()
    else:
        (folder / "data-00000-of-00001.arrow").unlink()
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa,arc_easy", "--data-dir", str(data),
                           "--out", str(tmp_path / "o")])
    assert "arc_easy" in err and "save_to_disk" in err
    assert {"folder": "dataset_info.json, state.json, data-00000-of-00001.arrow", "state.json": "lacks state.json",
            "arrow": "lacks data-*.arrow"}[damage] in err
    assert not (tmp_path / "o").exists()


def test_model_that_cannot_be_loaded(model_dirs, tmp_path, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "no_such_architecture"}')
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an earlier run's results stay as they were, even with --overwrite
    err = refused(capsys, [str(model_dirs["vanilla"]), str(broken), "--tasks", "piqa", "--out", str(out),
                           "--overwrite"])
    assert f"cannot load model {str(broken)!r}" in err
    assert (out / "results.json").read_text() == "{}"
    err = refused(capsys, [str(tmp_path / "nowhere"), "--tasks", "piqa", "--out", str(out), "--overwrite"])
    assert "does not exist" in err


def test_model_with_broken_weights(model_dirs, tmp_path, capsys):
    broken = tmp_path / "cut"
    shutil.copytree(model_dirs["vanilla"], broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    out = tmp_path / "o"
    err = refused(capsys, [str(broken), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out", str(out)])
    assert err.startswith(f"sinktrain zeroshot: error: cannot load model {str(broken)!r}: ")
    assert not (out / "results.json").exists()


def test_overwrite_replaces_only_a_zeroshot_output(model_dirs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    args = [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out", str(mine)]
    assert "exists and is not empty; pass --overwrite" in refused(capsys, args)
    assert "is not an earlier zeroshot output (no results.json)" in refused(capsys, [*args, "--overwrite"])
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
