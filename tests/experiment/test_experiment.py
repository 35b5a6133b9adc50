"""The whole study in one command: resumable after a kill, and equal to running each stage by hand."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from sinktrain.cli import main

REPO = Path(__file__).resolve().parents[2]
OPENING = REPO / "tests" / "persuasion_opening.txt"  # see test_experiment_hostile

STUDY = {
    "name": "mini",
    "recipe": str(REPO / "recipes/tiny-cpu.yaml"),
    "base": {
        "model": {"preset": "tiny", "max_seq_len": 64},
        "schedule": {"warmup_steps": 1},
        "trainer": {"strategy": "single", "precision": "32-true", "accelerator": "cpu", "global_batch_size": 4,
                    "micro_batch_size": 2, "max_steps": 6, "val_every": 3, "val_batches": 1, "log_every": 1,
                    "progress_bar": False},
        "checkpoint": {"every": 2, "keep_last": 0},
        "logging": {"sink_score_every": 3, "sink_score_samples": 2},
    },
    "variants": {"vanilla": {"model": {"sink": {"kind": "none", "num_tokens": 0}}},
                 "sink1": {"model": {"sink": {"kind": "token", "num_tokens": 1}}}},
    "data": {"sources": [str(REPO / "data/books/bierce_devils_dictionary.txt")], "txt_documents": "paragraphs",
             "val_fraction": 0.05},
    "stream": {"text": str(OPENING), "tokens": 400, "cache": 32, "sinks": [0, 1],
               "mode": "parallel", "plots": False, "tensorboard": False},
    "zeroshot": {"tasks": ["piqa"], "limit": 4, "batch_size": 4, "data_dir": str(REPO / "data/zeroshot")},
}


def _run_study(cfg_path, runs_dir, **popen):
    cmd = [sys.executable, "-m", "sinktrain", "experiment", str(cfg_path), "--runs_dir", str(runs_dir)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            **popen)


@pytest.fixture(scope="module")
def killed_then_finished(tmp_path_factory):
    """Start the study, SIGKILL it once the second variant has its first checkpoint, run it again to the end."""
    tmp = tmp_path_factory.mktemp("study")
    cfg_path = tmp / "mini.yaml"
    cfg_path.write_text(yaml.safe_dump(STUDY, sort_keys=False))
    root = tmp / "runs" / "mini"
    proc = _run_study(cfg_path, tmp / "runs")
    deadline = time.time() + 600
    target = root / "train" / "sink1" / "checkpoints" / "step-00000002" / "COMPLETE"
    while not target.exists():
        assert proc.poll() is None, "study ended before it could be killed:\n" + proc.stdout.read()[-3000:]
        assert time.time() < deadline, "no checkpoint of the second variant within 10 minutes"
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    first_out = proc.communicate()[0]
    assert not (root / "report.md").exists()
    vanilla_ckpts = {p.name: p.stat().st_mtime_ns for p in (root / "train/vanilla/checkpoints").iterdir()}
    manifest_mtime = (root / "data" / "manifest.json").stat().st_mtime_ns

    proc = _run_study(cfg_path, tmp / "runs")
    second_out = proc.communicate(timeout=900)[0]
    assert proc.returncode == 0, second_out[-4000:]
    return {"tmp": tmp, "root": root, "cfg_path": cfg_path, "first": first_out, "second": second_out,
            "vanilla_ckpts": vanilla_ckpts, "manifest_mtime": manifest_mtime}


def test_rerun_after_kill_skips_finished_stages_and_resumes_training(killed_then_finished):
    r = killed_then_finished
    root, out = r["root"], r["second"]
    assert "train vanilla: done (step 6 checkpoint exists), skipped" in out
    assert (root / "data" / "manifest.json").stat().st_mtime_ns == r["manifest_mtime"]  # data not re-prepared
    # prepare's no-op line names the study's way to redo it (`sinktrain experiment` takes no --overwrite)
    assert "already holds this dataset; nothing to do (--set data.overwrite=true redoes it)" in out
    assert {p.name: p.stat().st_mtime_ns for p in (root / "train/vanilla/checkpoints").iterdir()} == r["vanilla_ckpts"]
    # the interrupted variant resumed from its checkpoint rather than starting over
    steps = [json.loads(line)["step"] for line in (root / "train/sink1/metrics.jsonl").read_text().splitlines()]
    assert "train sink1" in out and steps.count(1) == 1 and steps[-1] == 6
    report = (root / "report.md").read_text()
    assert "| vanilla |" in report and "| sink1 |" in report and "0+32" in report and "1+31" in report
    results = json.loads((root / "report.json").read_text())
    assert set(results) == {"vanilla", "sink1"} and set(results["sink1"]) == {"0+32", "1+31"}
    assert "## Zero-shot accuracy (Table 4 layout) — limited run" in report
    assert "| task | n | vanilla | sink1 |" in report


def test_report_equals_running_each_stage_by_hand(killed_then_finished, tmp_path):
    r = killed_then_finished
    root = r["root"]
    study = STUDY
    # data, by hand: byte-identical shards
    data_dir = tmp_path / "data"
    argv = ["data", "prepare", "--out_dir", str(data_dir), "--txt_documents", "paragraphs", "--val_fraction", "0.05",
            "--sources", study["data"]["sources"][0]]
    assert main(argv) == 0
    assert sorted(p.name for p in data_dir.glob("*.bin")) == sorted(p.name for p in (root / "data").glob("*.bin"))
    for shard in data_dir.glob("*.bin"):
        assert shard.read_bytes() == (root / "data" / shard.name).read_bytes()

    # the sink variant, by hand: its recipe with the study's settings as --set overrides
    sets = []
    for section, values in study["base"].items():
        for k, v in values.items():
            sets += ["--set", f"{section}.{k}={json.dumps(v)}"]
    sets += ["--set", "model.sink={kind: token, num_tokens: 1}", "--set", f"data.dir={data_dir}"]
    run_dir = tmp_path / "sink1-run"
    assert main(["train", "--config", study["recipe"], "--run-dir", str(run_dir), *sets]) == 0
    assert main(["export", str(run_dir), str(tmp_path / "sink1")]) == 0
    s = study["stream"]
    assert main(["stream-eval", str(tmp_path / "sink1"), "--text", s["text"], "--tokens", str(s["tokens"]),
                 "--cache", str(s["cache"]), "--sinks", "0,1", "--mode", "parallel",
                 "--out", str(tmp_path / "eval")]) == 0
    by_hand = json.loads((tmp_path / "eval" / "results.json").read_text())["sink1"]
    report = json.loads((root / "report.json").read_text())["sink1"]
    assert by_hand.keys() == report.keys()
    for config in report:
        assert by_hand[config]["tokens"] == report[config]["tokens"]
        assert by_hand[config]["ppl"] == pytest.approx(report[config]["ppl"], rel=1e-9, abs=0)
    z = study["zeroshot"]
    assert main(["zeroshot", str(tmp_path / "sink1"), "--tasks", "piqa", "--limit", str(z["limit"]),
                 "--data-dir", z["data_dir"], "--out", str(tmp_path / "zs")]) == 0
    by_hand = json.loads((tmp_path / "zs" / "results.json").read_text())[str(tmp_path / "sink1")]
    assert by_hand == json.loads((root / "zeroshot" / "results.json").read_text())[str(root / "export" / "sink1")]


def test_a_finished_study_runs_again_without_loading_lightning(killed_then_finished):
    """Every stage is done: a rerun checks the inputs, skips each stage and writes the report. It loaded Lightning
    and DeepSpeed for train's checks (6 s of a 9 s rerun on 2 cores), which need neither."""
    r = killed_then_finished
    report = (r["root"] / "report.json").read_bytes()
    code = ("import sys; from sinktrain.cli import main; code = main(sys.argv[1:]); "
            "print(code, sorted(m for m in ('lightning', 'deepspeed') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code, "experiment", str(r["cfg_path"]), "--runs_dir",
                           str(r["tmp"] / "runs")], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.stdout.splitlines()[-1] == "0 []", proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in ("train vanilla", "train sink1", "export vanilla", "export sink1", "stream-eval", "zeroshot"):
        assert f"[experiment] {stage}: done" in proc.stdout, proc.stdout
    assert (r["root"] / "report.json").read_bytes() == report


@pytest.mark.distributed
def test_study_under_torchrun_with_deepspeed(tmp_path):
    """The cluster path of paper-table3: every rank trains each variant (DeepSpeed ZeRO-1, world size 2), rank 0
    alone prepares data, exports, evaluates and reports."""
    from torchrun_helpers import free_port, run

    study = json.loads(json.dumps(STUDY))
    study["base"]["trainer"].update(strategy="deepspeed", zero_stage=1, max_steps=2, val_every=2)
    study["base"]["checkpoint"] = {"every": 2, "keep_last": 1}
    study["base"]["logging"] = {"sink_score_every": 2, "sink_score_samples": 2}
    cfg_path = tmp_path / "mini.yaml"
    cfg_path.write_text(yaml.safe_dump(study, sort_keys=False))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
           "-m", "sinktrain", "experiment", str(cfg_path), "--runs_dir", str(tmp_path / "runs")]
    proc = run(cmd, cwd=REPO, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    root = tmp_path / "runs" / "mini"
    for variant in ("vanilla", "sink1"):
        assert json.loads((root / "train" / variant / "run.json").read_text())["world_size"] == 2
    assert proc.stdout.count("[experiment] train sink1:") == 1  # rank 0 reports, the other rank stays quiet
    assert set(json.loads((root / "report.json").read_text())) == {"vanilla", "sink1"}
