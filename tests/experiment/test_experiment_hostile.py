"""The study runner: every stage's input is checked before the first stage, and a stage whose inputs changed
(longer training, re-prepared data) runs again instead of reporting old numbers next to new ones."""

import json
from pathlib import Path

import pytest
import yaml

import sinktrain.stream.evaluate  # noqa: F401  imported outside any test: its Progress binds sys.stderr at import
from sinktrain.cli import main

REPO = Path(__file__).resolve().parents[2]

STUDY = {
    "name": "tiny",
    "recipe": str(REPO / "recipes/tiny-cpu.yaml"),
    "base": {"trainer": {"max_steps": 2, "val_every": 0, "log_every": 1}, "checkpoint": {"every": 2, "keep_last": 1},
             "logging": {"sink_score_every": 0}},
    "variants": {"vanilla": {"model": {"sink": {"kind": "none", "num_tokens": 0}}}},
    "data": {"sources": [str(REPO / "data/books/bierce_devils_dictionary.txt")], "txt_documents": "paragraphs",
             "val_fraction": 0.05},
    "stream": {"text": str(REPO / "data/books/austen_persuasion.txt"), "tokens": 200, "cache": 32, "sinks": [0, 1],
               "plots": False, "tensorboard": False},
}


def run_study(tmp_path, capfd, study) -> tuple[int, str]:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(study, sort_keys=False))
    code = main(["experiment", str(path), "--runs-dir", str(tmp_path / "runs")])
    out = capfd.readouterr()
    return code, out.out + out.err


def changed(study, section, key, value):
    study = json.loads(json.dumps(study))
    study[section].setdefault("trainer", {}) if section == "base" else None
    target = study[section]["trainer"] if section == "base" else study[section]
    target[key] = value
    return study


@pytest.mark.parametrize("section, key, value, message", [
    ("stream", "sinks", [0, 32], "sink count s=32 is not below the cache size C=32"),
    ("stream", "text", "/nonexistent/book.txt", "text source '/nonexistent/book.txt' does not exist"),
    ("stream", "mode", "fast", "unknown mode 'fast'"),
    ("data", "sources", ["/nonexistent/corpus.jsonl"], "source '/nonexistent/corpus.jsonl' does not exist"),
    ("base", "accelerator", "gpu", "trainer.accelerator is gpu but this machine has no CUDA GPU"),
    ("stream", "overwrite", True, "experiment stream: 'overwrite' is set by the experiment; remove it"),
    ("stream", "device", "gpu", "--device 'gpu' is not a torch device"),
], ids=["sinks-ge-cache", "missing-text", "bad-mode", "missing-source", "gpu-without-one", "stream-overwrite",
        "bad-stream-device"])
def test_every_stage_input_is_checked_before_the_first_stage(tmp_path, capfd, section, key, value, message):
    import torch

    if key == "accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out = run_study(tmp_path, capfd, changed(STUDY, section, key, value))
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and message in err[0], out
    assert not (tmp_path / "runs").exists()  # no data prepared, nothing trained


def test_a_stage_whose_inputs_changed_runs_again(tmp_path, capfd):
    root = tmp_path / "runs" / "tiny"
    code, out = run_study(tmp_path, capfd, STUDY)
    assert code == 0, out
    first = json.loads((root / "report.json").read_text())

    code, out = run_study(tmp_path, capfd, STUDY)  # nothing changed: every stage skipped
    assert code == 0 and "export vanilla: done" in out and "stream-eval: done" in out, out

    # Longer training: export and stream-eval follow the new checkpoint (the old runner kept the old results).
    code, out = run_study(tmp_path, capfd, changed(STUDY, "base", "max_steps", 4))
    assert code == 0, out
    assert "export vanilla: done" not in out and "stream-eval: done" not in out, out
    longer = json.loads((root / "report.json").read_text())
    assert longer["vanilla"]["0+32"]["ppl"] != first["vanilla"]["0+32"]["ppl"]
    assert json.loads((root / "export/vanilla/config.json").read_text())["sinktrain"]["step"] == 4

    # Data prepared again (overwrite: true, another split): the run trained on the old data is kept aside and
    # the variant trains again; every later stage follows.
    study = changed(STUDY, "base", "max_steps", 4)
    study["data"].update(overwrite=True, val_fraction=0.1)
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0, out
    assert "the data was prepared again since this variant was trained" in out
    assert (root / "train/vanilla.old-1/checkpoints/step-00000004").is_dir()
    run_info = json.loads((root / "train/vanilla/run.json").read_text())
    assert run_info["data_manifest"]["config"]["val_fraction"] == 0.1
    assert "stream-eval: done" not in out
    assert json.loads((root / "report.json").read_text())["vanilla"]["0+32"]["ppl"] != longer["vanilla"]["0+32"]["ppl"]

    # A finished variant under another recipe (here the learning rate) is kept aside and trained again, instead
    # of its old weights being reported under the new recipe; bookkeeping (how often it logs) changes nothing.
    bookkeeping = json.loads(json.dumps(study))
    bookkeeping["base"]["trainer"]["log_every"] = 2
    code, out = run_study(tmp_path, capfd, bookkeeping)
    assert code == 0 and "train vanilla: done" in out and "stream-eval: done" in out, out
    relearned = json.loads(json.dumps(bookkeeping))
    relearned["base"]["optim"] = {"lr": 1.0e-3}
    code, out = run_study(tmp_path, capfd, relearned)
    assert code == 0, out
    assert "it finished under another recipe (optim.lr 0.003 -> 0.001)" in out, out
    assert (root / "train/vanilla.old-2/checkpoints/step-00000004").is_dir()
    assert yaml.safe_load((root / "train/vanilla/config.yaml").read_text())["optim"]["lr"] == 1.0e-3
    assert "stream-eval: done" not in out
