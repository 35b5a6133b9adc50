"""In-process single-device training: the run directory contract, resume guards, NaN stop, bad input."""

from __future__ import annotations

import json
import math
import logging
import warnings

import numpy as np
import pytest
import torch

from sinktrain.train import latest_checkpoint, list_checkpoints, load_checkpoint_weights, load_train_config, train
from train_helpers import RECIPES


def tiny(tiny_data, run_dir, *sets, recipe="tiny-cpu-sink.yaml", resume="auto"):
    return load_train_config(RECIPES / recipe, [f"data.dir={tiny_data}", *sets], run_dir=str(run_dir), resume=resume)


def test_single_device_run_dir_contract_resume_guards_and_continuation(tiny_data, tmp_path):
    from sinktrain.model import build_model

    run = tmp_path / "run"
    sets = ["trainer.max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=1", "trainer.val_every=2",
            "logging.sink_score_every=2"]
    cfg = tiny(tiny_data, run, *sets)
    # Lightning's own lines stay (the device it found), its advertisement and its internal deprecation do not.
    # Read off its loggers, not stderr: where its handler writes depends on what was imported first.
    said: list[str] = []
    lines = logging.Handler()
    lines.emit = lambda record: said.append(record.getMessage())
    loggers = [logging.getLogger(f"lightning.{p}.utilities.rank_zero") for p in ("pytorch", "fabric")]
    for logger in loggers:
        logger.addHandler(lines)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            assert train(cfg) == run
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
    assert any("GPU available" in line for line in said) and not any("💡" in line for line in said)
    assert not [w for w in caught if "LeafSpec" in str(w.message)]

    # config.yaml is the fully resolved config and loads back to the same TrainConfig.
    assert load_train_config(run / "config.yaml") == cfg
    assert [p.name for p in list_checkpoints(run)] == ["step-00000004"]  # keep_last 1 pruned step 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4]
    for r in rows[1:]:
        assert {"loss", "lr", "grad_norm", "tokens_seen", "tokens_per_s"} <= r.keys()
        assert r["tokens_seen"] == r["step"] * 4 * 63  # G × text tokens (64 minus the sink)
    assert {"val_loss", "sink_score", "sink_dependence"} <= rows[2].keys() and len(rows[4]["sink_score"]) == 2

    weights, meta = load_checkpoint_weights(latest_checkpoint(run))
    assert meta["step"] == 4 and meta["config"]["model"] == cfg.model.to_dict()
    model = build_model(cfg.model, seed=None)
    assert list(weights) == list(model.state_dict())
    model.load_state_dict(weights, strict=True)

    # The probe's sink dependence: the checkpoint's weights on the probe batch (the first validation samples,
    # the sink token in front) with the sink hidden from the second half of each sequence.
    from sinktrain.data.dataset import TokenDataset
    from sinktrain.model.modeling import prepend_sink_tokens
    from sinktrain.model.probe import sink_dependence

    val = TokenDataset(tiny_data, "val", sample_len=cfg.sample_len, seed=cfg.data.seed)
    n = cfg.logging.sink_score_samples  # 2 in this recipe
    probe = prepend_sink_tokens(torch.from_numpy(np.stack([val.sequential(i) for i in range(n)]).astype(np.int64)),
                                cfg.model.sink_token_ids)
    dependence = sum(sink_dependence(model.eval(), probe[i: i + 1], hidden=1) for i in range(n)) / n
    assert abs(rows[4]["sink_dependence"] - dependence) < 1e-6 and rows[4]["sink_dependence"] != 0

    # Resuming with another model config is refused and changes nothing.
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match="different model config.*num_tokens|different model config.*sink"):
        train(tiny(tiny_data, run, *sets, "model.sink.num_tokens=2"))
    with pytest.raises(ValueError, match="global_batch_size 4 and data.seed 1234, this run has 8 and 1234"):
        train(tiny(tiny_data, run, *sets, "trainer.global_batch_size=8"))
    with pytest.raises(FileExistsError, match="already holds checkpoints"):
        train(tiny(tiny_data, run, *sets, resume="never"))
    with pytest.raises(ValueError, match="not a complete checkpoint"):
        train(tiny(tiny_data, run, *sets, resume=str(run / "checkpoints")))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    # --resume auto with a longer run continues from step 4.
    train(tiny(tiny_data, run, *[s for s in sets if not s.startswith("trainer.max_steps")], "trainer.max_steps=6"))
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3, 4, 5, 6]
    assert latest_checkpoint(run).name == "step-00000006"


def test_going_back_to_an_older_checkpoint_is_refused_while_later_ones_remain(tiny_data, tmp_path):
    """Rewinding to step 2 of a run that reached step 4 used to mix the two histories: keep_last pruned the new
    run's checkpoints as it saved them and kept the abandoned steps, which --resume auto and export then took."""
    run = tmp_path / "run"
    sets = ["trainer.max_steps=4", "checkpoint.every=1", "checkpoint.keep_last=0", "trainer.val_every=0",
            "logging.sink_score_every=0"]
    train(tiny(tiny_data, run, *sets))
    step2 = run / "checkpoints" / "step-00000002"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match=r"holds checkpoints past step-00000002 \(step-00000003, "
                                              r"step-00000004\).*--resume auto.*move them out of"):
        train(tiny(tiny_data, run, *sets, resume=str(step2)))
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before

    # Moved away as the line says, the rewind runs and its own steps are the newest.
    aside = tmp_path / "aside"
    aside.mkdir()
    for name in ("step-00000003", "step-00000004"):
        (run / "checkpoints" / name).rename(aside / name)
    train(tiny(tiny_data, run, *sets[:2], "checkpoint.keep_last=2", *sets[3:], resume=str(step2)))
    assert [p.name for p in list_checkpoints(run)] == ["step-00000003", "step-00000004"]
    assert load_checkpoint_weights(latest_checkpoint(run))[1]["step"] == 4


def assert_schedule_counts_applied_steps_only(run, cfg) -> None:
    """Some steps overflowed (their grad norm is not finite), and each row's LR is the schedule at the number of
    steps applied before it."""
    from sinktrain.train.module import WarmupCosine

    schedule = WarmupCosine(cfg.warmup_steps, cfg.total_steps, cfg.optim.min_lr / cfg.optim.lr)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    skipped = [not math.isfinite(r["grad_norm"]) for r in rows]
    assert any(skipped) and not all(skipped), [r["grad_norm"] for r in rows]
    applied = 0
    for row, skip in zip(rows, skipped):
        assert row["lr"] == pytest.approx(cfg.optim.lr * schedule(applied), rel=1e-9, abs=1e-15), row
        applied += not skip


def test_deepspeed_fp16_keeps_the_learning_rate_on_the_steps_an_overflow_skipped(tiny_data, tmp_path):
    """GPT-NeoX (Pythia's fp16) steps its schedule inside DeepSpeed's engine, which does not on a step whose
    gradients overflowed; Lightning stepped it after every step, skipped or not. A loss scale of 2^24 makes the
    first steps overflow (their grad norm is inf) until the scaler has backed off. In a child process: DeepSpeed
    sets up a process group."""
    import subprocess
    import sys

    run = tmp_path / "run"
    sets = [f"data.dir={tiny_data}", "trainer.precision=16-mixed", "trainer.initial_loss_scale_power=24",
            "trainer.max_steps=16", "trainer.devices=1", "trainer.val_every=0", "logging.sink_score_every=0",
            "checkpoint.every=0"]
    args = ["train", "--config", str(RECIPES / "tiny-cpu-deepspeed.yaml"), *(f"--set={s}" for s in sets),
            "--run_dir", str(run)]
    done = subprocess.run([sys.executable, "-m", "sinktrain", *args], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    cfg = load_train_config(run / "config.yaml")
    assert_schedule_counts_applied_steps_only(run, cfg)


def test_grad_scaler_fp16_keeps_the_learning_rate_on_the_steps_an_overflow_skipped(tiny_data, tmp_path):
    """The same outside DeepSpeed: torch's GradScaler skips optimizer.step() on a step whose fp16 gradients
    overflowed, and Lightning stepped the schedule anyway (torch warned that it ran before optimizer.step)."""
    run = tmp_path / "run"
    cfg = tiny(tiny_data, run, "trainer.precision=16-mixed", "trainer.initial_loss_scale_power=24",
               "trainer.max_steps=12", "trainer.val_every=0", "logging.sink_score_every=0", "checkpoint.every=0",
               recipe="tiny-cpu.yaml")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train(cfg)
    assert not [w for w in caught if "lr_scheduler.step()" in str(w.message)]
    assert_schedule_counts_applied_steps_only(run, cfg)


def test_nonfinite_loss_stops_with_a_message_and_keeps_the_last_good_checkpoint(tiny_data, tmp_path, monkeypatch):
    from sinktrain.train.module import SinkLM

    real_loss = SinkLM.loss

    def loss_going_bad(self, input_ids, labels):  # the training loss turns NaN from the 4th optimizer step on
        loss = real_loss(self, input_ids, labels)
        return loss * float("nan") if self.trainer.global_step >= 3 else loss

    monkeypatch.setattr(SinkLM, "loss", loss_going_bad)
    run = tmp_path / "run"
    with pytest.raises(RuntimeError, match="loss became nan at step 4.*step-00000003"):
        train(tiny(tiny_data, run, "trainer.max_steps=8", "checkpoint.every=1", "checkpoint.keep_last=0"))
    assert [p.name for p in list_checkpoints(run)] == ["step-00000001", "step-00000002", "step-00000003"]
    assert not any(p.name.startswith("step-00000004") for p in (run / "checkpoints").iterdir())


def test_max_time_stops_at_a_step_with_its_checkpoint_and_exit_0_and_resume_matches_a_straight_run(
        tiny_data, tmp_path, capsys):
    """trainer.max_time: a planned stop, like a SIGTERM's (the step's checkpoint, a line saying how to go on)
    but a normal return. A limit below one step's time stops after step 1 whatever the machine's speed."""
    sets = ["schedule.total_steps=6", "checkpoint.every=100", "checkpoint.keep_last=0", "trainer.val_every=0",
            "logging.sink_score_every=0", "trainer.progress_bar=false"]  # one LR schedule for all runs
    timed = tmp_path / "timed"
    # logged and validated every 4 steps, but the step it stops at gets both: its checkpoint is what an export takes
    assert train(tiny(tiny_data, timed, "trainer.max_steps=6", "trainer.max_time=1e-6", *sets, "trainer.log_every=4",
                      "trainer.val_every=4")) == timed
    saved = timed / "checkpoints" / "step-00000001"
    assert (f"train: trainer.max_time (1e-06 s) spent, stopped after step 1 of 6; saved {saved}; "
            f"continue with --resume auto") in capsys.readouterr().err
    assert [p.name for p in list_checkpoints(timed)] == ["step-00000001"]
    [row] = [json.loads(line) for line in (timed / "metrics.jsonl").read_text().splitlines()]
    assert row["step"] == 1 and math.isfinite(row["loss"]) and math.isfinite(row["val_loss"])

    straight = tmp_path / "straight"
    train(tiny(tiny_data, timed, "trainer.max_steps=3", *sets))  # resumed, no limit this time
    train(tiny(tiny_data, straight, "trainer.max_steps=3", *sets, resume="never"))
    a, meta_a = load_checkpoint_weights(latest_checkpoint(timed))
    b, meta_b = load_checkpoint_weights(latest_checkpoint(straight))
    assert meta_a["step"] == meta_b["step"] == 3
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    # A limit spent in the last step is the planned end, not an early stop.
    capsys.readouterr()
    train(tiny(tiny_data, tmp_path / "one", "trainer.max_steps=1", "trainer.max_time=1e-6", *sets))
    assert "max_time" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "sets, error, match",
    [
        (["data.dir={missing}"], FileNotFoundError, "no manifest.json in data dir"),
        (["model.tokenizer_vocab_size=50000"], ValueError, "50277-id vocabulary but the model expects 50000"),
        (["trainer.strategy=ddp", "trainer.devices=3"], ValueError,
         "world size 3 × micro_batch_size 2 does not divide global_batch_size 4"),
    ],
    ids=["missing-manifest", "vocab-mismatch", "world-size"],
)
def test_bad_input_is_one_clear_error_and_writes_nothing(tiny_data, tmp_path, sets, error, match):
    run = tmp_path / "run"
    sets = [s.format(missing=tmp_path / "nowhere") for s in sets]
    with pytest.raises(error, match=match):
        train(tiny(tiny_data, run, *sets))
    assert not run.exists()


def test_cli_prints_one_line_and_exits_2_on_an_unknown_key(tiny_data, tmp_path, capsys):
    from sinktrain.cli import main

    run = tmp_path / "run"
    code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run),
                 "--set", f"data.dir={tiny_data}", "--set", "trainer.max_stepz=3"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "max_stepz" in err and "accepted keys" in err
    assert not run.exists()


def test_ctrl_c_is_an_interrupt_not_lightnings_exit_1(tiny_data, tmp_path, capsys, monkeypatch):
    """Lightning answers a KeyboardInterrupt with its own shutdown and sys.exit(1), leaving SIGINT ignored: the
    verb said nothing and exited 1. Now: `interrupted`, exit 130, the SIGINT handler as it was, and the run resumes
    from its last checkpoint."""
    import signal

    from sinktrain.cli import main
    from sinktrain.train.module import SinkLM

    real_step = SinkLM.training_step

    def ctrl_c_at_step_3(self, batch, batch_idx):
        if self.trainer.global_step == 3:
            raise KeyboardInterrupt
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SinkLM, "training_step", ctrl_c_at_step_3)
    before = signal.getsignal(signal.SIGINT)
    run = tmp_path / "run"
    code = main(["train", "--config", str(RECIPES / "tiny-cpu-sink.yaml"), "--run-dir", str(run), "--set",
                 f"data.dir={tiny_data}", "--set", "trainer.max_steps=6", "--set", "checkpoint.every=2",
                 "--set", "trainer.progress_bar=false"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 130 and err[-1] == "sinktrain train: interrupted"
    assert err[-2] == ("train: interrupted after step 3, which is not saved; rerunning the same command continues "
                       "from step-00000002 (a SIGTERM stops at a checkpoint)"), err[-3:]
    assert signal.getsignal(signal.SIGINT) is before
    assert [p.name for p in list_checkpoints(run)] == ["step-00000002"]


def test_run_json_keeps_each_resume_that_changed_the_schedule(tiny_data, tmp_path, capsys):
    """A run continued under another LR schedule (max_steps raised) is not a straight run of the new one: run.json
    says from which step, for the run's life (a study's report reads it)."""
    run = tmp_path / "run"
    sets = ["checkpoint.every=2", "trainer.val_every=0", "logging.sink_score_every=0", "trainer.progress_bar=false"]
    changes = lambda: json.loads((run / "run.json").read_text())["schedule_changes"]  # noqa: E731
    train(tiny(tiny_data, run, "trainer.max_steps=2", *sets))
    assert changes() == []
    train(tiny(tiny_data, run, "trainer.max_steps=4", *sets))
    [first] = changes()
    assert first["at_step"] == 2 and "trainer.max_steps 2 -> 4" in first["changes"]
    assert ("train: resuming step-00000002 with trainer.max_steps 2 -> 4: the learning-rate schedule of this config "
            "(and its grad_clip) applies from step 2 on") in capsys.readouterr().err
    train(tiny(tiny_data, run, "trainer.max_steps=6", "trainer.max_time=1e-6", *sets))  # stops after step 5
    assert [c["at_step"] for c in changes()] == [2, 4]
    train(tiny(tiny_data, run, "trainer.max_steps=6", *sets))  # the same schedule: nothing new
    assert [c["at_step"] for c in changes()] == [2, 4]
    # what the restored optimizer state and weights keep is refused, not recorded unused; grad_clip applies
    for key, value, was in [("optim.eps", "0.1", "1e-08"), ("optim.betas", "[0.5,0.6]", "[0.9, 0.95]"),
                            ("seed", "99", "1234")]:
        with pytest.raises(ValueError) as caught:
            train(tiny(tiny_data, run, "trainer.max_steps=8", f"{key}={value}", *sets))
        assert str(caught.value).startswith(f"checkpoint step-00000006 was trained with {key} {was}, which "
                                            f"resuming keeps"), caught.value
    train(tiny(tiny_data, run, "trainer.max_steps=8", "optim.grad_clip=0.5", *sets))
    assert changes()[-1] == {"at_step": 6, "changes": ["trainer.max_steps 6 -> 8", "optim.grad_clip 1.0 -> 0.5"]}
