"""Two-process CPU training under torchrun: DeepSpeed ZeRO-2 and DDP (gloo), the real engines, no mocks.

Each scenario is a straight run, a run killed with SIGKILL (during / after a checkpoint save) and a
`--resume auto` run; the resumed run must match the straight one at every step and in its final weights.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from train_helpers import ok, subprocess_env, torchrun, torchrun_two_nodes, train_args

pytestmark = pytest.mark.distributed


def metrics(run_dir: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows]
    assert steps == sorted(set(steps)), f"metrics.jsonl steps repeat or go back: {steps}"
    return {r["step"]: r for r in rows}


def assert_same_run(straight: dict[int, dict], resumed: dict[int, dict],
                    keys=("loss", "lr", "grad_norm", "val_loss", "sink_score")):
    assert sorted(straight) == sorted(resumed)
    for step, row in straight.items():
        for key in keys:
            assert row.get(key) == resumed[step].get(key), \
                f"step {step}: {key} {row.get(key)} != {resumed[step].get(key)}"


def assert_same_weights(a: Path, b: Path):
    from sinktrain.train import latest_checkpoint, load_checkpoint_weights

    wa, meta_a = load_checkpoint_weights(latest_checkpoint(a))
    wb, meta_b = load_checkpoint_weights(latest_checkpoint(b))
    assert meta_a["step"] == meta_b["step"]
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"weights differ in {k}"


def tb_scalars(run_dir: Path) -> dict[str, list]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: acc.Scalars(tag) for tag in acc.Tags()["scalars"]}


def test_deepspeed_zero2_trains_checkpoints_survives_kill_during_save(tiny_data, tmp_path):
    from sinktrain.train import list_checkpoints, latest_checkpoint, load_checkpoint_weights, load_train_config, train
    from train_helpers import RECIPES

    # Global batch 8 = 2 ranks × micro-batch 2 × 2 accumulation steps.
    recipe = "tiny-cpu-deepspeed.yaml"
    sets = ["trainer.global_batch_size=8", "checkpoint.every=5", "checkpoint.keep_last=2"]

    # A: 20 steps straight, 2 ranks, ZeRO-2.
    straight = tmp_path / "straight"
    ok(torchrun(train_args(recipe, tiny_data, straight, *sets), log=tmp_path / "straight.log"))
    rows = metrics(straight)
    losses = [rows[s]["loss"] for s in range(1, 21)]
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, f"loss did not fall: {losses}"
    assert [p.name for p in list_checkpoints(straight)] == ["step-00000015", "step-00000020"]  # keep_last 2
    info = json.loads((straight / "run.json").read_text())
    assert (info["world_size"], info["grad_accumulation"]) == (2, 2)
    weights, meta = load_checkpoint_weights(latest_checkpoint(straight))
    assert meta["step"] == 20 and meta["tokens_seen"] == 20 * 8 * 64

    # The same 8 samples per step on one process (4 accumulation steps, no DeepSpeed) give the same loss and
    # gradient norm: gradients are averaged over the global batch exactly once (not divided twice by the
    # accumulation count, which Lightning + DeepSpeed would do without strategy.py's fix).
    single = load_train_config(RECIPES / "tiny-cpu.yaml", [f"data.dir={tiny_data}", "trainer.global_batch_size=8",
                                                           "trainer.max_steps=3"], run_dir=str(tmp_path / "single"))
    reference = metrics(train(single))
    for step in (1, 2, 3):
        assert reference[step]["loss"] == pytest.approx(rows[step]["loss"], rel=1e-5)
        assert reference[step]["grad_norm"] == pytest.approx(rows[step]["grad_norm"], rel=1e-3)
    assert weights["gpt_neox.embed_in.weight"].dtype == torch.float32

    # TensorBoard holds loss, lr, tokens/s, validation loss and the per-layer sink score.
    tb = tb_scalars(straight)
    for tag in ("train/loss", "train/lr", "train/tokens_per_s", "train/grad_norm", "val/loss",
                "sink_score/layer_00", "sink_score/layer_01"):
        assert tag in tb, f"{tag} missing from TensorBoard: {sorted(tb)}"
    assert [e.step for e in tb["train/loss"]] == list(range(1, 21))
    assert [e.value for e in tb["train/loss"]] == pytest.approx(losses, rel=1e-6)
    assert [e.step for e in tb["sink_score/layer_00"]] == [0, 10, 20]
    assert all(0.0 < e.value < 1.0 for e in tb["sink_score/layer_01"])

    # B: same run, SIGKILLed by rank 0 in the middle of saving step 15 (files written, not yet complete).
    killed = tmp_path / "killed"
    proc = torchrun(train_args(recipe, tiny_data, killed, *sets),
                    env=subprocess_env(SINKTRAIN_FAULT="kill-during-save:15"))
    assert proc.returncode != 0
    assert (killed / "checkpoints" / "step-00000015.tmp").is_dir()
    assert latest_checkpoint(killed).name == "step-00000010"
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        load_checkpoint_weights(killed / "checkpoints" / "step-00000015.tmp")

    # C: --resume auto continues from step 10; every step and the final weights match A.
    ok(torchrun(train_args(recipe, tiny_data, killed, *sets, resume="auto"), log=tmp_path / "resumed.log"))
    assert not (killed / "checkpoints" / "step-00000015.tmp").exists()
    assert json.loads((killed / "run.json").read_text())["resumed_from"].endswith("step-00000010")
    assert_same_run(rows, metrics(killed))
    assert_same_weights(straight, killed)


def test_deepspeed_zero2_with_compile_gives_the_eager_gradients(tiny_data, tmp_path):
    """ZeRO-2 reduces gradients in the order their hooks fire and assumes every rank fires them alike. Compiled
    blocks fire them in their graph's input order, which transformers' output-capturing hooks, left on the model by
    rank 0's sink probe, used to change on rank 0 alone (the first step's grad norm then differed from the eager
    run's). Probe and validation at every step here, so whatever runs between steps on one rank only would show."""
    recipe = "tiny-cpu-deepspeed.yaml"  # ZeRO-2
    sets = ["trainer.global_batch_size=8", "trainer.max_steps=3", "checkpoint.every=0", "trainer.val_every=1",
            "logging.sink_score_every=1"]
    runs = {}
    for compile_ in ("false", "true"):
        run = tmp_path / f"compile-{compile_}"
        ok(torchrun(train_args(recipe, tiny_data, run, *sets, f"speed.compile={compile_}"),
                    log=tmp_path / f"compile-{compile_}.log"))
        runs[compile_] = metrics(run)
    for step in (1, 2, 3):
        eager, compiled = runs["false"][step], runs["true"][step]
        assert compiled["loss"] == pytest.approx(eager["loss"], rel=1e-5), step
        assert compiled["grad_norm"] == pytest.approx(eager["grad_norm"], rel=1e-4), step


def test_ddp_two_nodes_then_kill_and_resume_on_one_node(tiny_data, tmp_path):
    recipe, sets = "tiny-cpu-ddp.yaml", ["trainer.max_steps=10", "checkpoint.every=5", "trainer.val_every=5",
                                         "logging.sink_score_every=5"]

    # A: two torchrun "nodes" (--nnodes 2 --node_rank 0/1, one rank each) on 127.0.0.1 train as one job.
    straight = tmp_path / "two-nodes"
    for proc in torchrun_two_nodes(train_args(recipe, tiny_data, straight, *sets)):
        ok(proc)
    info = json.loads((straight / "run.json").read_text())
    assert (info["world_size"], info["num_nodes"], info["devices_per_node"]) == (2, 2, 1)
    rows = metrics(straight)
    assert sorted(rows) == list(range(0, 11))

    # B: one node, 2 ranks, SIGKILLed right after checkpoint 5 is complete.
    killed = tmp_path / "killed"
    proc = torchrun(train_args(recipe, tiny_data, killed, *sets),
                    env=subprocess_env(SINKTRAIN_FAULT="kill-after-save:5"))
    assert proc.returncode != 0

    # C: resume: identical to the two-node run at every step (same world size, same data order, same math).
    ok(torchrun(train_args(recipe, tiny_data, killed, *sets, resume="auto"), log=tmp_path / "resumed.log"))
    assert_same_run(rows, metrics(killed))
    assert_same_weights(straight, killed)


def test_a_foreign_folder_is_refused_once_under_torchrun(tiny_data, tmp_path):
    """Global rank 0 alone judges the run dir (the other ranks used to race it while it wrote run.json, and refused
    a sound run dir); its refusal ends the job, and the user's folder stays as it was."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine\n")
    proc = torchrun(train_args("tiny-cpu-ddp.yaml", tiny_data, mine, "trainer.max_steps=2"))
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("is not empty and not a sinktrain run") == 1, out[-3000:]
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


def alive(pid: int) -> bool:
    """Running, not exited (an orphan's zombie waits for whoever adopted it to reap it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def test_workers_stop_and_save_when_torchrun_itself_is_killed(tiny_data, tmp_path):
    """torchrun starts its workers in sessions of their own: a launcher killed outright (SIGKILL, the OOM killer)
    left them training as orphans. Now the kernel sends each worker SIGTERM when the launcher dies, and they stop
    as after a scheduler's SIGTERM: at the end of a step, saved, exit 143."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from train_helpers import REPO
    from torchrun_helpers import free_port

    from sinktrain.train import list_checkpoints
    from sinktrain.train.checkpoint import verify_checkpoint

    run = tmp_path / "orphans"
    sets = ["trainer.max_steps=100000", "schedule.total_steps=100000", "checkpoint.every=1000",
            "checkpoint.keep_last=0", "trainer.log_every=1", "trainer.val_every=0", "logging.sink_score_every=0",
            "trainer.progress_bar=false"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), *train_args("tiny-cpu-ddp.yaml", tiny_data, run, *sets)]
    launcher = subprocess.Popen(cmd, cwd=REPO, env=subprocess_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
    workers: list[int] = []
    try:
        deadline = time.time() + 180
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 3):
            assert launcher.poll() is None and time.time() < deadline, launcher.communicate()[0][-3000:]
            time.sleep(0.1)
        workers = [int(pid) for pid in
                   Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()]
        assert len(workers) == 2, workers
        launcher.kill()
        out, _ = launcher.communicate(timeout=120)  # the workers hold the pipe: it ends when they have exited
        deadline = time.time() + 60
        while any(map(alive, workers)) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(map(alive, workers)), out[-3000:]
    finally:
        for pid in workers:  # the test failed: leave no worker behind
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    step = metrics(run)[max(metrics(run))]["step"]
    saved = run / "checkpoints" / f"step-{step:08d}"
    assert f"stopped by SIGTERM after step {step}; saved {saved}" in out, out[-3000:]
    assert [p.name for p in list_checkpoints(run)] == [saved.name]
    assert verify_checkpoint(saved)["step"] == step
