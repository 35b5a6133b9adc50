"""An earlier stream-eval's folder is never lost or mixed with a new run's files: a second run into it is refused,
`--overwrite` replaces it only once the new output is whole, and only if it is a stream-eval output."""

from __future__ import annotations

import importlib
import json

import pytest
from stream_helpers import BOOKS

from sinktrain.cli import main
from sinktrain.stream import StreamEvalConfig, evaluate

evaluate_module = importlib.import_module("sinktrain.stream.evaluate")  # the package re-exports a function by its name
BOOK = str(BOOKS / "austen_persuasion.txt")


def run(model_dir, out, *args) -> int:
    return main(["stream-eval", str(model_dir), "--text", BOOK, "--cache", "24", "--tokens", "100", "--out", str(out),
                 "--plots", "false", "--tensorboard", "false", *args])


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_second_run_is_refused_and_overwrite_replaces_the_whole_folder(model_dirs, tmp_path, capsys):
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0,4") == 0
    first = snapshot(out)
    assert {"nll/vanilla/0+24.npy", "nll/vanilla/4+20.npy", "results.json"} <= set(first)
    capsys.readouterr()

    assert run(model_dirs["vanilla"], out, "--sinks", "1") == 2
    line = one_line(capsys)
    assert f"output folder {out} exists and is not empty; pass --overwrite" in line and "another --out" in line
    assert snapshot(out) == first

    assert run(model_dirs["vanilla"], out, "--sinks", "1", "--overwrite") == 0
    # Only the new run's files: the first run's per-configuration NLLs would otherwise read as this run's.
    assert sorted(p.name for p in (out / "nll" / "vanilla").iterdir()) == ["1+23.npy"]
    assert list(json.loads((out / "results.json").read_text())["vanilla"]) == ["1+23"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]  # no staging folder left beside it


def test_a_failed_run_leaves_the_earlier_output_as_it_was(model_dirs, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    assert run(model_dirs["vanilla"], out, "--sinks", "0,4") == 0
    first = snapshot(out)
    real = evaluate_module.run_configuration
    calls = []

    def second_configuration_fails(*args, **kwargs):
        calls.append(args[3])
        if len(calls) == 2:  # after the first configuration's NLLs were written
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(evaluate_module, "run_configuration", second_configuration_fails)
    cfg = StreamEvalConfig(models=[str(model_dirs["vanilla"])], text=BOOK, cache=24, sinks=[1, 2], tokens=100,
                           out=str(out), overwrite=True, plots=False, tensorboard=False)
    with pytest.raises(RuntimeError, match="killed"):
        evaluate(cfg)
    assert calls == ["1+23", "2+22"]
    assert snapshot(out) == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eval"]


def test_overwrite_replaces_only_a_stream_eval_output(model_dirs, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("my notes")
    assert run(model_dirs["vanilla"], mine, "--sinks", "4", "--overwrite") == 2
    assert "is not an earlier stream-eval output (no nll/); --overwrite replaces only those" in one_line(capsys)
    assert snapshot(mine) == {"notes.txt": b"my notes"}
    other = tmp_path / "zeroshot"  # another verb's output: it holds a results.json too
    other.mkdir()
    (other / "results.json").write_text('{"vanilla": {"piqa": {"acc": 0.6}}}')
    assert run(model_dirs["vanilla"], other, "--sinks", "4", "--overwrite") == 2
    assert "is not an earlier stream-eval output (no nll/)" in one_line(capsys)
    assert snapshot(other) == {"results.json": b'{"vanilla": {"piqa": {"acc": 0.6}}}'}


def test_out_that_is_a_file_or_the_current_folder_is_refused(model_dirs, tmp_path, capsys, monkeypatch):
    (tmp_path / "f").write_text("x")
    assert run(model_dirs["vanilla"], tmp_path / "f", "--sinks", "4") == 2
    assert f"--out '{tmp_path / 'f'}' is a file; pass a folder" in one_line(capsys)
    assert (tmp_path / "f").read_text() == "x"
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)  # the output would replace the folder the process runs in
    assert run(model_dirs["vanilla"], ".", "--sinks", "4") == 2
    assert "--out '.' is the current folder or holds it; pass a folder inside it" in one_line(capsys)
    assert not any(empty.iterdir()) and sorted(p.name for p in tmp_path.iterdir()) == ["empty", "f"]
