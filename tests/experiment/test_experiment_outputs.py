"""A finished study run again: what each stage wrote is checked before it is reused (a damaged output makes the
stage run again), and the inputs each stage reads are checked before the first training.

Every test here starts from a copy of one finished study (relative paths, so the copy's done-markers hold)."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from sinktrain.cli import main
from test_experiment_hostile import SAMPLE, STUDY

# The hostile tests' tiny study, with a zero-shot block: every stage runs.
FINISHED = {**STUDY, "runs_dir": "runs",
            "zeroshot": {"tasks": ["piqa"], "limit": 2, "batch_size": 2, "data_dir": str(SAMPLE)}}
ROOT = Path("runs/tiny")  # relative to the study's folder


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    folder = tmp_path_factory.mktemp("finished")
    (folder / "study.yaml").write_text(yaml.safe_dump(FINISHED, sort_keys=False))
    with pytest.MonkeyPatch.context() as m:
        m.chdir(folder)
        assert main(["experiment", "study.yaml"]) == 0
    return folder


@pytest.fixture
def study(finished, tmp_path, monkeypatch):
    """A copy of the finished study, the current folder."""
    folder = tmp_path / "study"
    shutil.copytree(finished, folder, symlinks=True)
    monkeypatch.chdir(folder)
    return folder


def run(capfd, study=FINISHED, *sets) -> tuple[int, str]:
    Path("study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    capfd.readouterr()
    code = main(["experiment", "study.yaml", *[a for s in sets for a in ("--set", s)]])
    out = capfd.readouterr()
    return code, out.out + out.err


def errors(out: str) -> list[str]:
    return [line for line in out.splitlines() if "error" in line]


def test_a_copy_of_the_finished_study_skips_every_stage(study, capfd):
    code, out = run(capfd)
    assert code == 0 and "train vanilla: done" in out and "export vanilla: done" in out, out
    assert "stream-eval: done" in out and "zeroshot: done" in out, out


@pytest.mark.parametrize("stage, damage", [
    ("stream", '{"vanilla": {"0+32": {"ppl": 1'),
    ("stream", "[]"),
    ("stream", '{"vanilla": 3}'),
    ("zeroshot", "[]"),
], ids=["stream-cut-short", "stream-list", "stream-number", "zeroshot-list"])
def test_a_damaged_stage_result_is_made_again(study, capfd, stage, damage):
    """A finished stage's results.json was reused unread: cut short it failed with the parser's message naming no
    file, `[]` with an AttributeError traceback, `{"vanilla": 3}` with a TypeError after report.json was replaced."""
    results = ROOT / stage / "results.json"
    whole = results.read_bytes()
    report = (ROOT / "report.json").read_bytes()
    results.write_text(damage)
    code, out = run(capfd)
    name = "stream-eval" if stage == "stream" else "zeroshot"
    again = "evaluating again" if stage == "stream" else "scoring again"
    assert code == 0 and f"{name}: in {ROOT / stage}, results.json changed since it was written; {again}" in out, out
    assert json.loads(results.read_bytes()) == json.loads(whole)
    assert (ROOT / "report.json").read_bytes() == report
    code, out = run(capfd)  # and the stage's new output is reused again
    assert code == 0 and f"{name}: done" in out, out


def test_a_stage_output_is_reused_only_while_its_files_are_as_written(study, capfd):
    """Any file the stage wrote counts, not only results.json: the report reads the stream's attention
    statistics too."""
    stats = (ROOT / "stream/attention_stats.json").read_bytes()
    (ROOT / "stream/attention_stats.json").unlink()
    code, out = run(capfd)
    assert code == 0, out
    assert f"stream-eval: in {ROOT / 'stream'}, attention_stats.json is missing; evaluating again" in out, out
    assert (ROOT / "stream/attention_stats.json").read_bytes() == stats and "zeroshot: done" in out, out


def test_a_report_that_cannot_be_made_leaves_the_earlier_one(study):
    """report.json was replaced before the rest of the report was built: a failure after it left the new numbers
    beside the old report.md."""
    from sinktrain.config_io import build_dataclass
    from sinktrain.experiment.config import ExperimentConfig
    from sinktrain.experiment.report import write_report

    cfg = build_dataclass(ExperimentConfig, FINISHED)
    before = {f: (ROOT / f).read_bytes() for f in ("report.json", "report.md", "experiment.yaml", "loss_curves.png")}
    (ROOT / "train/vanilla/run.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="run.json is not a sinktrain run.json"):
        write_report(cfg, {"vanilla": {"0+32": {"ppl": 2.0}}}, {"vanilla": ROOT / "train/vanilla"})
    assert {f: (ROOT / f).read_bytes() for f in before} == before
