"""Careless or hostile input to `sinktrain train`: refused in one line before anything is written, or honoured
and said; nothing of the user's, and nothing of another training, is lost or changed."""

from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from sinktrain.cli import main
from sinktrain.train import latest_checkpoint, list_checkpoints, load_train_config, train
from sinktrain.train.module import WarmupCosine
from crafted_pickle import Payload
from train_helpers import RECIPES

SETS = ["trainer.max_steps=4", "checkpoint.every=2", "checkpoint.keep_last=0", "trainer.val_every=0",
        "logging.sink_score_every=0"]


def tiny(data, run_dir, *sets, resume="auto"):
    return load_train_config(RECIPES / "tiny-cpu.yaml", [f"data.dir={data}", *SETS, *sets], run_dir=str(run_dir),
                             resume=resume)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tiny_data, tmp_path_factory):
    """A finished 4-step run with checkpoints at steps 2 and 4 (copy it before changing it)."""
    run = tmp_path_factory.mktemp("hostile") / "run"
    train(tiny(tiny_data, run))
    return run


@pytest.fixture
def run_copy(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    return run


def test_a_foreign_folder_is_refused_and_kept(tiny_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    (mine / "tb").mkdir(parents=True)
    (mine / "tb" / "events.out").write_bytes(b"my curves")
    for name in ("config.yaml", "run.json", "metrics.jsonl"):
        (mine / name).write_text(f"my own {name}\n")
    before = snapshot(mine)
    code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(mine),
                 "--set", f"data.dir={tiny_data}", "--set", "trainer.max_steps=2"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "is not empty and not a sinktrain run" in err and "choose a new or empty --run-dir" in err
    assert snapshot(mine) == before


def test_a_run_dir_inside_the_data_or_a_model_folder_is_refused(tiny_data, tmp_path, capsys):
    """A run inside the dataset it reads, or inside a model folder, wrote its checkpoints there: the dataset's
    next `prepare --overwrite` refused it as foreign, and the model folder's next push carried them."""
    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights")
    before = {folder: snapshot(folder) for folder in (data, model)}
    for run_dir, line in (
            (data / "run1", f"--run-dir {str(data / 'run1')!r} lies inside data.dir {str(data)!r}, which the run "
                            f"reads; choose an --run-dir outside it"),
            (data, f"--run-dir {str(data)!r} is data.dir {str(data)!r}, which the run reads; choose an --run-dir "
                   f"outside it"),
            (model / "runs" / "r", f"--run-dir {str(model / 'runs' / 'r')!r} lies inside model folder "
                                   f"{str(model)!r}; choose a --run-dir outside it")):
        code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run_dir),
                     "--set", f"data.dir={data}", "--set", "trainer.max_steps=2"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and err == [f"sinktrain train: error: {line}"]
    assert {folder: snapshot(folder) for folder in (data, model)} == before


def test_a_run_without_checkpoint_says_what_it_discards(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    train(tiny(tiny_data, run, "trainer.max_steps=2", "checkpoint.every=0"))  # every=0: no checkpoint
    assert not list_checkpoints(run)
    capsys.readouterr()
    train(tiny(tiny_data, run, "trainer.max_steps=2", "checkpoint.every=0"))
    err = capsys.readouterr().err
    assert "has no complete checkpoint, so this run starts at step 0: discarding metrics.jsonl (2 rows), tb/" in err
    assert "rewriting config.yaml, run.json" in err
    assert [json.loads(r)["step"] for r in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_a_second_training_is_refused_with_the_holders_pid(tiny_data, run_copy, capsys):
    from sinktrain.train.run_dir import run_dir_lock

    with run_dir_lock(run_copy):  # what the first training holds for its whole run
        before = snapshot(run_copy)
        code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run_copy),
                     "--set", f"data.dir={tiny_data}", *sum((["--set", s] for s in SETS), []),
                     "--set", "trainer.max_steps=6"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"is in use by another training (pid {os.getpid()} on " in err and "wait for it to end" in err
    assert snapshot(run_copy) == before  # the lock file's text is the holder's, untouched
    # The lock goes with its holder: the next training runs.
    train(tiny(tiny_data, run_copy, "trainer.max_steps=6"))
    assert latest_checkpoint(run_copy).name == "step-00000006"


def test_a_crafted_pickle_is_never_run(tiny_data, run_copy, tmp_path, capsys):
    newest = run_copy / "checkpoints" / "step-00000004" / "lightning.ckpt"
    state = torch.load(newest, weights_only=True)
    state["extra"] = Payload(tmp_path / "pwned")
    torch.save(state, newest)
    before = snapshot(run_copy)
    for argv in (["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run_copy),
                  "--set", f"data.dir={tiny_data}", "--set", "trainer.max_steps=6"],
                 ["export", str(run_copy), str(tmp_path / "hf")]):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        assert str(newest) in err and "could run code" in err
        assert not (tmp_path / "pwned").exists()
    assert snapshot(run_copy) == before and not (tmp_path / "hf").exists()


def test_a_crafted_deepspeed_checkpoint_is_never_run(run_copy, tmp_path, capsys):
    # A directory that claims to be a DeepSpeed checkpoint: DeepSpeed's own converter unpickles with
    # weights_only=False, so the files must be checked before it sees them.
    ckpt = run_copy / "checkpoints" / "step-00000004"
    meta = json.loads((ckpt / "meta.json").read_text())
    (ckpt / "meta.json").write_text(json.dumps({**meta, "kind": "deepspeed"}))
    (ckpt / "lightning.ckpt").unlink()
    (ckpt / "checkpoint").mkdir()
    torch.save({"module": Payload(tmp_path / "pwned")}, ckpt / "checkpoint" / "mp_rank_00_model_states.pt")
    code = main(["export", str(ckpt), str(tmp_path / "hf")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "mp_rank_00_model_states.pt" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "hf").exists()


def _deepspeed_run(tiny_data, run, *sets):
    """A finished 2-step DeepSpeed run of one process. A subprocess: DeepSpeed's process group would otherwise stay set
    up in pytest's process."""
    import subprocess
    import sys

    from train_helpers import REPO, ok, subprocess_env, train_args

    sets = ["trainer.devices=1", "trainer.max_steps=2", "checkpoint.every=2", "trainer.val_every=0",
            "logging.sink_score_every=0", *sets]
    ok(subprocess.run([sys.executable, *train_args("tiny-cpu-deepspeed.yaml", tiny_data, run, *sets)], cwd=REPO,
                      env=subprocess_env(), capture_output=True, text=True, timeout=300))
    return run


@pytest.fixture(scope="module")
def deepspeed_run(tiny_data, tmp_path_factory):
    """A finished 2-step DeepSpeed ZeRO-2 fp32 run of one process (copy it before changing it)."""
    return _deepspeed_run(tiny_data, tmp_path_factory.mktemp("hostile-deepspeed") / "run")


BF16 = ["trainer.zero_stage=1", "trainer.precision=bf16-mixed"]


@pytest.fixture(scope="module")
def deepspeed_bf16_run(tiny_data, tmp_path_factory):
    """A finished 2-step DeepSpeed ZeRO-1 bf16 run of one process: DeepSpeed's BF16_Optimizer, whose shards
    DeepSpeed's zero_to_fp32 does not read, so export reads them itself (copy it before changing it)."""
    return _deepspeed_run(tiny_data, tmp_path_factory.mktemp("hostile-deepspeed-bf16") / "run", *BF16)


def resume_and_export(tiny_data, run, tmp_path, capsys) -> list[str]:
    """`sinktrain train --resume auto` and `sinktrain export` of a DeepSpeed run: the error line of each."""
    lines = []
    for argv in (["train", "--config", str(RECIPES / "tiny-cpu-deepspeed.yaml"), "--run-dir", str(run),
                  "--set", f"data.dir={tiny_data}", "--set", "trainer.devices=1", "--set", "trainer.max_steps=4"],
                 ["export", str(run), str(tmp_path / "hf")]):
        code = main(argv)
        err = capsys.readouterr().err.strip()
        assert code == 2 and len(err.splitlines()) == 1, err
        lines.append(err)
    return lines


def crafted_deepspeed_folder(folder, marker):
    """DeepSpeed's file names, holding pickles that create `marker` when unpickled."""
    folder.mkdir()
    torch.save({"module": Payload(marker)}, folder / "mp_rank_00_model_states.pt")
    torch.save({"optimizer_state_dict": Payload(marker)}, folder / "zero_pp_rank_0_mp_rank_00_optim_states.pt")


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_a_deepspeed_latest_naming_another_folder_is_never_loaded(deepspeed_run, tiny_data, tmp_path, capsys, where):
    # Lightning resumes without a tag, so DeepSpeed reads it from `latest` and unpickles (weights_only=False)
    # whatever folder it names: only the checkpoint's own `checkpoint/` folder is checked.
    run = tmp_path / "run"
    shutil.copytree(deepspeed_run, run)
    ckpt = latest_checkpoint(run)
    evil = run / "checkpoints" / "evil"
    crafted_deepspeed_folder(evil, tmp_path / "pwned")
    (ckpt / "latest").write_text(str(evil) if where == "absolute" else "../evil")
    before = snapshot(run)
    for err in resume_and_export(tiny_data, run, tmp_path, capsys):
        assert "its 'latest' file names" in err and "not 'checkpoint'" in err and str(ckpt) in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "hf").exists()
    assert snapshot(run) == before


def test_a_symlink_inside_a_deepspeed_checkpoint_is_never_followed(deepspeed_run, tiny_data, tmp_path, capsys):
    # Path.rglob does not enter a linked folder, so a decoy model-states file elsewhere in the step folder used to
    # pass the check while DeepSpeed and zero_to_fp32 unpickled the link's target.
    run = tmp_path / "run"
    shutil.copytree(deepspeed_run, run)
    ckpt = latest_checkpoint(run)
    (ckpt / "checkpoint").rename(ckpt / "decoy")  # real, harmless DeepSpeed files
    crafted_deepspeed_folder(tmp_path / "evil", tmp_path / "pwned")
    (ckpt / "checkpoint").symlink_to(tmp_path / "evil")
    before = snapshot(run)
    for err in resume_and_export(tiny_data, run, tmp_path, capsys):
        assert f"holds a symbolic link, {str(ckpt / 'checkpoint')!r}" in err and "Copy the real files" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "hf").exists()
    assert snapshot(run) == before


def test_a_checkpoint_reached_through_a_linked_folder_still_exports(deepspeed_run, tmp_path):
    (tmp_path / "link").symlink_to(deepspeed_run)  # only links under the step folder are refused
    assert main(["export", str(tmp_path / "link" / "checkpoints" / "step-00000002"), str(tmp_path / "hf")]) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file()


def damage_deepspeed(ckpt, damage: str) -> str:
    """Damage a one-rank DeepSpeed checkpoint (its files still load with weights_only=True); the reason export and
    resume give."""
    from sinktrain.train.checkpoint import safe_load

    folder = ckpt / "checkpoint"
    model_file, (shard,) = folder / "mp_rank_00_model_states.pt", folder.glob("*_optim_states.pt")
    model, optimizer = safe_load(model_file), safe_load(shard)
    state = optimizer["optimizer_state_dict"]
    share = state["single_partition_of_fp32_groups"][0].numel()  # one rank: all of group 0
    if damage == "no-optimizer-shard":
        shard.unlink()
        return (f"checkpoint {str(ckpt)!r} has no checkpoint/{shard.name}, the optimizer shard of rank 0 of the 1 "
                f"that saved it; it is damaged")
    if damage in ("cut-fp32-weights", "no-fp32-weights", "cut-moment"):
        if damage == "cut-fp32-weights":
            state["single_partition_of_fp32_groups"][0] = state["single_partition_of_fp32_groups"][0][:1000].clone()
        elif damage == "no-fp32-weights":
            del state["single_partition_of_fp32_groups"]
        else:
            moments = state["base_optimizer_state"]["state"][0]
            moments["exp_avg"] = moments["exp_avg"][:1000].clone()
        torch.save(optimizer, shard)
        return {"cut-fp32-weights": f"checkpoint file {str(shard)!r}: its fp32 weights of parameter group 0 hold 1000 "
                                    f"values, not the {share} of rank 0's share of the group's 10 parameters "
                                    f"(param_shapes in mp_rank_00_model_states.pt); it is cut or damaged, or from "
                                    f"another checkpoint",
                "no-fp32-weights": f"checkpoint file {str(shard)!r}: its optimizer state lacks "
                                   f"single_partition_of_fp32_groups; it is damaged",
                "cut-moment": f"checkpoint file {str(shard)!r}: its optimizer state 'exp_avg' of parameter group 0 is "
                              f"a float32 tensor of shape [1000], not the {share} values of the group's fp32 weights; "
                              f"it is damaged"}[damage]
    if damage == "no-module":
        del model["module"]
    elif damage == "no-param-shapes":
        del model["param_shapes"]
    elif damage == "missing-tensor":
        del model["module"]["model.lm_head.weight"]
    elif damage == "another-size":  # the model states of pythia-14m under this tiny model's optimizer and meta.json
        from sinktrain.model import ModelConfig, build_model

        bigger = build_model(ModelConfig(preset="pythia-14m", max_seq_len=64), seed=None)
        model["module"] = {f"model.{k}": v for k, v in bigger.state_dict().items()}
    else:  # extra-tensor
        model["module"]["model.extra.weight"] = torch.zeros(3)
    torch.save(model, model_file)
    lacks = "lacks 1 model tensors (e.g. 'lm_head.weight')"
    extra = "holds 1 tensors its model does not have (e.g. 'model.extra.weight')"
    return {"no-module": f"checkpoint file {str(model_file)!r} holds no module, not DeepSpeed's model states; it is "
                         f"damaged",
            "no-param-shapes": f"checkpoint file {str(model_file)!r} lacks param_shapes, which DeepSpeed's model "
                               f"states hold; it is damaged",
            "missing-tensor": f"checkpoint {str(ckpt)!r} {lacks}; it is damaged, or not a sinktrain checkpoint of the "
                              f"model its meta.json describes",
            "another-size": f"checkpoint {str(ckpt)!r}: model tensor 'gpt_neox.embed_in.weight' is a float32 tensor of "
                            f"shape [50304, 128], not a floating-point tensor of shape [50304, 64]; it is damaged",
            "extra-tensor": f"checkpoint {str(ckpt)!r} {extra}; it is damaged, or not a sinktrain checkpoint of the "
                            f"model its meta.json describes"}[damage]


def resume_from(tiny_data, run, ckpt, *sets) -> int:
    return main(["train", "--config", str(RECIPES / "tiny-cpu-deepspeed.yaml"), "--run-dir", str(run),
                 "--resume", str(ckpt), *sum((["--set", s] for s in [f"data.dir={tiny_data}", "trainer.devices=1",
                                                                     "trainer.max_steps=4", *sets]), [])])


DAMAGED_ANYWHERE = ["no-optimizer-shard", "cut-fp32-weights", "no-module", "missing-tensor"]


@pytest.mark.parametrize("run, damage", [("bf16", d) for d in [*DAMAGED_ANYWHERE, "no-fp32-weights", "cut-moment",
                                                               "no-param-shapes", "another-size"]]
                         + [("fp32", d) for d in DAMAGED_ANYWHERE])
def test_a_damaged_deepspeed_checkpoint_is_one_line_for_export_and_resume(request, tiny_data, tmp_path, capsys, run,
                                                                          damage):
    """Export met these with a KeyError or RuntimeError traceback from its BF16 shard reader or zero_to_fp32, or
    exported without a word (model states lacking a tensor, or of another size: it reads the optimizer's weights);
    resume with a traceback from DeepSpeed's loader, or, from a cut fp32 partition, trained on, padded with zeros."""
    source = request.getfixturevalue("deepspeed_bf16_run" if run == "bf16" else "deepspeed_run")
    copy = tmp_path / "run"
    shutil.copytree(source, copy)
    ckpt = latest_checkpoint(copy)
    reason = damage_deepspeed(ckpt, damage)
    before = snapshot(copy)
    assert main(["export", str(copy), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; no older checkpoint is intact: "
                                               f"restore this one from a copy, or train the run again")
    assert resume_from(tiny_data, copy, ckpt, *(BF16 if run == "bf16" else [])) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain train: error: {reason}; restore it from a copy, or resume "
                                               f"from another checkpoint (--resume auto takes the newest intact one)")
    assert snapshot(copy) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_deepspeed_checkpoint_with_a_tensor_its_model_lacks_exports_but_does_not_resume(deepspeed_bf16_run,
                                                                                        tiny_data, tmp_path, capsys):
    """A strict load of it failed with DeepSpeed's traceback; export leaves such a tensor out, as it always did."""
    run = tmp_path / "run"
    shutil.copytree(deepspeed_bf16_run, run)
    ckpt = latest_checkpoint(run)
    reason = damage_deepspeed(ckpt, "extra-tensor")
    before = snapshot(run)
    assert resume_from(tiny_data, run, ckpt, *BF16) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain train: error: {reason}; restore it from a copy, or resume "
                                               f"from another checkpoint (--resume auto takes the newest intact one)")
    assert snapshot(run) == before
    assert main(["export", str(run), str(tmp_path / "hf")]) == 0


def test_every_checks_every_deepspeed_checkpoint_and_export_names_the_intact_one(deepspeed_run, tmp_path, capsys):
    """A cut fp32 partition in the newest of two checkpoints: --every wrote the older step, then failed on this one
    with zero_to_fp32's traceback."""
    run = tmp_path / "run"
    shutil.copytree(deepspeed_run, run)
    older, newest = run / "checkpoints" / "step-00000002", run / "checkpoints" / "step-00000004"
    shutil.copytree(older, newest)  # step 2's files under step 4's name and meta
    meta = json.loads((newest / "meta.json").read_text())
    (newest / "meta.json").write_text(json.dumps({**meta, "step": 4}))
    reason = damage_deepspeed(newest, "cut-fp32-weights")
    before = snapshot(run)
    assert main(["export", str(run), str(tmp_path / "steps"), "--every", "1"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: {reason}; --every exports nothing until every checkpoint it takes loads: restore "
        f"that one from a copy, or move it out of {run / 'checkpoints'} and run again")
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; the newest intact one is {older}: "
                                               f"pass it to export that step")
    assert snapshot(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert main(["export", str(older), str(tmp_path / "hf")]) == 0


def test_resume_falls_back_past_a_truncated_newest_checkpoint(tiny_data, run_copy, capsys):
    newest = run_copy / "checkpoints" / "step-00000004" / "lightning.ckpt"
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    rows_before = (run_copy / "metrics.jsonl").read_text().splitlines()
    train(tiny(tiny_data, run_copy))
    err = capsys.readouterr().err
    assert "skipping step-00000004: checkpoint file" in err and "truncated or damaged" in err
    assert "resuming from step-00000002, the newest complete checkpoint" in err
    # steps 3 and 4 were trained again, from step 2, and step 4 is whole again
    rows = [json.loads(r) for r in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4]
    timing = ("tokens_per_s", "time")  # all but the clock and the measured speed as in the uninterrupted run
    strip = lambda r: {k: v for k, v in r.items() if k not in timing}  # noqa: E731
    assert [strip(json.loads(r)) for r in rows_before] == [strip(r) for r in rows]
    torch.load(newest, weights_only=True)


def test_a_truncated_or_garbage_checkpoint_is_one_line_for_export(run_copy, tmp_path, capsys):
    ckpt = run_copy / "checkpoints" / "step-00000004"
    (ckpt / "lightning.ckpt").write_bytes((ckpt / "lightning.ckpt").read_bytes()[:1000])
    assert main(["export", str(ckpt), str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "lightning.ckpt" in err and "truncated or damaged" in err
    (ckpt / "meta.json").write_text("{garbage")
    assert main(["export", str(ckpt), str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "meta.json is not valid JSON" in err


@pytest.mark.parametrize("damage, reason", [
    ("no-meta", "has no meta.json; the checkpoint is damaged"),
    ("meta-without-config", "meta.json lacks its step, kind or config (model, trainer, data); the checkpoint is "
     "damaged"),
    ("copied-under-another-name", "is named for step 4 but its meta.json says step 2: a checkpoint copied or renamed; "
     "move it back to step-00000002 or remove it"),
])
def test_a_newest_checkpoint_whose_meta_does_not_hold_is_named_and_skipped(tiny_data, run_copy, capsys, tmp_path,
                                                                          damage, reason):
    """A meta.json that parses but lacks keys was a KeyError traceback; one deleted was skipped without a word; a
    step folder copied under a newer name was trusted by its name (export took the old weights as the newest)."""
    newest = run_copy / "checkpoints" / "step-00000004"
    if damage == "no-meta":
        (newest / "meta.json").unlink()
    elif damage == "meta-without-config":
        (newest / "meta.json").write_text('{"format": "sinktrain-checkpoint/1", "step": 4, "kind": "lightning"}')
    else:
        shutil.rmtree(newest)
        shutil.copytree(run_copy / "checkpoints" / "step-00000002", newest)
    assert main(["export", str(run_copy), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and reason in err and (
        f"the newest intact one is {run_copy / 'checkpoints' / 'step-00000002'}") in err, err
    train(tiny(tiny_data, run_copy))
    err = capsys.readouterr().err
    assert "skipping step-00000004: " in err and reason in err
    assert "resuming from step-00000002, the newest complete checkpoint" in err


@pytest.fixture(scope="module")
def other_data(tmp_path_factory):
    """Data of one book only: another manifest than tiny_data's."""
    from sinktrain.data import PrepareConfig, prepare
    from train_helpers import BOOKS

    return prepare(PrepareConfig(sources=[str(BOOKS / "austen_persuasion.txt")], txt_documents="paragraphs",
                                 out_dir=str(tmp_path_factory.mktemp("other-data") / "books"), val_fraction=0.05,
                                 progress=False))


def train_cli(data, run_dir, *sets):
    code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run_dir),
                 "--set", f"data.dir={data}", *sum((["--set", s] for s in [*SETS, *sets]), [])])
    return code


def test_a_garbage_run_json_is_one_line_naming_it(tiny_data, run_copy, capsys):
    """It was json's bare 'Expecting property name enclosed in double quotes: line 1 column 2 (char 1)'."""
    (run_copy / "run.json").write_text("{garbage")
    assert train_cli(tiny_data, run_copy, "trainer.max_steps=6") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith(f"sinktrain train: error: {run_copy / 'run.json'} is not valid JSON (Expecting property "
                          f"name") and err.endswith("restore it from a copy, or delete it to resume without its "
                                                    "record of earlier schedule changes"), err
    assert (run_copy / "run.json").read_text() == "{garbage"


@pytest.mark.parametrize("recorded_in", ["meta.json", "run.json"])  # run.json: checkpoints of older versions
def test_resume_with_other_data_is_refused_and_keeps_the_runs_record(tiny_data, other_data, run_copy, capsys,
                                                                     recorded_in):
    if recorded_in == "run.json":
        for meta in run_copy.glob("checkpoints/*/meta.json"):
            meta.write_text(json.dumps({k: v for k, v in json.loads(meta.read_text()).items()
                                        if k != "data_manifest_sha256"}))
    before = snapshot(run_copy)  # run.json's manifest hash, tokenizer/ and the checkpoints included
    assert train_cli(other_data, run_copy, "trainer.max_steps=6") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"checkpoint step-00000004 was trained on data.dir {str(tiny_data)!r}" in err
    assert f"but data.dir {str(other_data)!r} has manifest sha256" in err
    assert "resume with the same data.dir or start a new --run-dir" in err
    assert snapshot(run_copy) == before


def test_resume_on_the_same_data_prepared_again_continues(tiny_data, run_copy, tmp_path):
    """Prepared again with settings that change no byte (batching, another spelling of the source paths), the
    data has another manifest (its config block records them) but the same content: the run continues. It was
    refused, naming the same data.dir twice, and prepare had refused `./`-spelt sources as other sources."""
    from sinktrain.data import PrepareConfig, prepare, read_manifest
    from train_helpers import BOOKS

    again = tmp_path / "again"
    shutil.copytree(tiny_data, again)
    spelt = [str(BOOKS / "." / "austen_persuasion.txt"), str(BOOKS / "." / "bierce_devils_dictionary.txt")]
    settings = dict(sources=spelt, out_dir=str(again), txt_documents="paragraphs", val_fraction=0.05, seed=1234,
                    progress=False)
    before = (again / "manifest.json").read_bytes()
    prepare(PrepareConfig(**settings))  # the same sources by content: nothing to do
    assert (again / "manifest.json").read_bytes() == before
    prepare(PrepareConfig(**settings, batch_size=7, overwrite=True))
    assert (again / "manifest.json").read_bytes() != before
    assert read_manifest(again)["splits"] == read_manifest(tiny_data)["splits"]
    train(tiny(again, run_copy, "trainer.max_steps=6"))
    assert latest_checkpoint(run_copy).name == "step-00000006"


def test_resume_with_a_copy_of_the_same_data_continues(tiny_data, run_copy, tmp_path):
    shutil.copytree(tiny_data, tmp_path / "copy")  # the manifest names the data, not its path
    train(tiny(tmp_path / "copy", run_copy, "trainer.max_steps=6"))
    assert latest_checkpoint(run_copy).name == "step-00000006"


def test_resume_below_the_checkpoints_step_is_refused(tiny_data, run_copy, capsys):
    before = snapshot(run_copy)
    assert train_cli(tiny_data, run_copy, "trainer.max_steps=3") == 2
    err = capsys.readouterr().err.strip()
    assert err == ("sinktrain train: error: checkpoint step-00000004 is at step 4, past trainer.max_steps 3; "
                   "set trainer.max_steps to 4 or more, or start a new --run-dir")
    assert snapshot(run_copy) == before


@pytest.mark.parametrize("setting, message", [
    ("optim.betas=[0.9]", "optim.betas [0.9] must hold two values (AdamW's beta1, beta2)"),
    ("trainer.accelerator=GPU", "trainer.accelerator 'GPU' is unknown; choose one of auto, cpu, gpu, cuda"),
    ("trainer.accelerator=gpux", "trainer.accelerator 'gpux' is unknown"),
    ("trainer.devices=two", "trainer.devices 'two' is neither a positive integer nor auto; e.g. --set "
                            "trainer.devices=2"),
    ("trainer.num_nodes=many", "trainer.num_nodes 'many' is neither a positive integer nor auto"),
    ("optim.min_lr=0.01", "optim.min_lr 0.01 is above optim.lr 0.003"),
    ("schedule.warmup_steps=5", "the warmup (5 steps) is longer than the schedule (4 steps"),
    ("schedule.total_steps=1", "the warmup (2 steps) is longer than the schedule (1 steps"),
    ("model.sink={kind: token, num_tokens: 1, token_ids: [50300]}",
     "model.sink.token_ids [50300] are not the ids right after the tokenizer's 50277 entries ([50277]), which "
     "export needs"),
])
def test_a_bad_setting_is_one_line_before_anything_is_written(tiny_data, tmp_path, capsys, setting, message):
    assert train_cli(tiny_data, tmp_path / "run", setting) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "run").exists()


def test_resume_with_a_new_schedule_follows_it_and_says_so(tiny_data, run_copy, capsys):
    cfg = tiny(tiny_data, run_copy, "trainer.max_steps=6", "optim.lr=1.0e-3", "optim.min_lr=1.0e-4")
    train(cfg)
    err = capsys.readouterr().err
    assert "resuming step-00000004 with optim.lr 0.003 -> 0.001; optim.min_lr 0.0003 -> 0.0001; " \
           "trainer.max_steps 4 -> 6" in err
    rows = {r["step"]: r for r in map(json.loads, (run_copy / "metrics.jsonl").read_text().splitlines())}
    new = WarmupCosine(cfg.warmup_steps, cfg.total_steps, 1.0e-4 / 1.0e-3)
    for step in (5, 6):  # the lr of step s is the schedule's value after s - 1 scheduler steps
        assert rows[step]["lr"] == pytest.approx(1.0e-3 * new(step - 1), rel=1e-12)
    assert load_train_config(run_copy / "config.yaml").optim.lr == 1.0e-3


def test_gpu_on_a_machine_without_one_fails_before_writing(tiny_data, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    with pytest.raises(ValueError, match="trainer.accelerator is gpu but this machine has no CUDA GPU"):
        train(tiny(tiny_data, tmp_path / "run", "trainer.accelerator=gpu"))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("lever", ["optim.impl=fused_adam", "speed.fused_loss=liger"])
def test_a_cuda_only_lever_on_the_cpu_fails_before_writing(tiny_data, tmp_path, lever):
    key, value = lever.split("=")
    with pytest.raises(ValueError, match=f"^{key} {value} runs on CUDA only and this run trains on the CPU; "
                                         f"use {key} auto$"):
        train(tiny(tiny_data, tmp_path / "run", "trainer.accelerator=cpu", lever))
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content", ["trainer: {max_steps: 3\n", "\x00\xff binary"])
def test_a_garbage_recipe_is_one_line_naming_it(tmp_path, capsys, content):
    (tmp_path / "recipe.yaml").write_bytes(content.encode("latin1"))
    code = main(["train", "--config", str(tmp_path / "recipe.yaml"), "--run-dir", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "recipe.yaml is not" in err
    assert not (tmp_path / "run").exists()


def test_a_run_dir_under_a_file_is_one_line(tiny_data, tmp_path, capsys):
    (tmp_path / "afile").write_text("mine")
    code = main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(tmp_path / "afile" / "run"),
                 "--set", f"data.dir={tiny_data}"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Not a directory" in err
    assert (tmp_path / "afile").read_text() == "mine"


def test_garbage_lines_in_metrics_do_not_stop_resume_or_export(tiny_data, run_copy, tmp_path):
    with open(run_copy / "metrics.jsonl", "a") as f:
        f.write('5\n["a"]\n{"no_step": 1}\n{"step": "x"}\n\xff\xfe\n{"step": 3, "loss": 1.0')
    train(tiny(tiny_data, run_copy, "trainer.max_steps=6"))
    rows = [json.loads(r) for r in (run_copy / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    (run_copy / "metrics.jsonl").write_text('{"step": 1, "loss": 2.0}\n7\n["a"]\n')
    assert main(["export", str(run_copy), str(tmp_path / "hf")]) == 0


LOADER_UNDER_SIGTERM = """
import functools, multiprocessing, signal, sys, time
from sinktrain.train.datamodule import sigterm_safe_loader

def slow_start(init, worker_id):  # the signal comes before the workers are set up
    time.sleep(1)
    init(worker_id)

if __name__ == "__main__":
    multiprocessing.set_start_method(sys.argv[1], force=True)  # the platform's default, as Python 3.14 changed it
    got = []
    signal.signal(signal.SIGTERM, lambda *_: got.append(1))  # the trainer's part: note it, stop later
    loader = sigterm_safe_loader(list(range(10000)), batch_size=2, num_workers=2, persistent_workers=True)
    loader.worker_init_fn = functools.partial(slow_start, loader.worker_init_fn)
    it = iter(loader)
    print("ready", flush=True)
    while not got:
        time.sleep(0.01)
    print("served", sum(int(next(it).sum()) > -1 for _ in range(100)), flush=True)
    KEEP = it  # still alive at interpreter exit: multiprocessing terminates and joins its workers there
"""


@pytest.mark.parametrize("start_method", ["fork", "forkserver", "spawn"])
def test_loader_workers_outlive_a_group_sigterm_and_still_exit_with_the_trainer(start_method, tmp_path):
    """`timeout` and Slurm send SIGTERM to every process of the job. The loader's workers must keep serving
    batches (a dead worker crashed the trainer's save) and still exit when the trainer does (a worker
    that ignored SIGTERM outright made interpreter exit wait for ever). Whatever the default start method
    (forkserver from Python 3.14): spawned workers start with SIGTERM unblocked and died of it."""
    import os
    import signal
    import subprocess
    import sys

    from train_helpers import REPO, subprocess_env

    script = tmp_path / "loader_under_sigterm.py"  # a file: spawned workers import its slow_start
    script.write_text(LOADER_UNDER_SIGTERM)
    proc = subprocess.Popen([sys.executable, str(script), start_method], cwd=REPO, env=subprocess_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline() == "ready\n", proc.stderr.read()[-2000:]
        os.killpg(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert (proc.returncode, out) == (0, "served 100\n"), err[-2000:]


def test_sigterm_stops_at_a_step_with_its_checkpoint_and_resume_matches_a_straight_run(tiny_data, tmp_path):
    """A scheduler's SIGTERM: the run saves the step it stopped at, says so in one line, exits 143, and
    `--resume auto` from there ends with the weights of a run never stopped. The signal goes to the whole
    process group, data-loader workers included, as `timeout` and Slurm send it: a worker that died of it
    used to crash the save (seen on a GPU, where the loader has workers by default)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from train_helpers import REPO, subprocess_env, train_args

    from sinktrain.train import load_checkpoint_weights

    run = tmp_path / "stopped"
    sets = ["trainer.max_steps=100000", "schedule.total_steps=100000",  # one LR schedule for all three runs
            "checkpoint.every=1000", "checkpoint.keep_last=0", "trainer.log_every=1",
            "trainer.val_every=0", "logging.sink_score_every=0", "trainer.progress_bar=false",
            "trainer.global_batch_size=4", "trainer.micro_batch_size=2",  # 2 micro-batches: accumulation
            "speed.loader_workers=1"]
    proc = subprocess.Popen([sys.executable, *train_args("tiny-cpu.yaml", tiny_data, run, *sets)], cwd=REPO,
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.time() + 120
    try:
        while not ((run / "metrics.jsonl").exists() and (run / "metrics.jsonl").read_text().count("\n") >= 3):
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-2000:]
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:  # the test failed: leave no trainer behind
            os.killpg(proc.pid, signal.SIGKILL)
    step = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])["step"]
    assert proc.returncode == 143, err[-2000:]
    saved = run / "checkpoints" / f"step-{step:08d}"
    assert err.strip().splitlines()[-1] == (
        f"sinktrain train: error: stopped by SIGTERM after step {step}; saved {saved}; continue with --resume auto")
    assert [p.name for p in list_checkpoints(run)] == [f"step-{step:08d}"]

    # The same processes as the stopped run (one thread each), so the same arithmetic.
    end = [f"trainer.max_steps={step + 2}", *sets[1:]]
    resumed, straight = run, tmp_path / "straight"
    for run_dir, resume in ((resumed, "auto"), (straight, "never")):
        done = subprocess.run([sys.executable, *train_args("tiny-cpu.yaml", tiny_data, run_dir, *end, resume=resume)],
                              cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((resumed / "run.json").read_text())["resumed_from"].endswith(f"step-{step:08d}")
    a, meta_a = load_checkpoint_weights(latest_checkpoint(resumed))
    b, meta_b = load_checkpoint_weights(latest_checkpoint(straight))
    assert meta_a["step"] == meta_b["step"] == step + 2
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def _books_config(data, **changes):
    """The PrepareConfig that made the session's tiny_data (tests/train/conftest.py), into `data`."""
    from sinktrain.data import PrepareConfig
    from train_helpers import BOOKS

    return PrepareConfig(sources=[str(BOOKS / "austen_persuasion.txt"), str(BOOKS / "bierce_devils_dictionary.txt")],
                         out_dir=str(data), txt_documents="paragraphs", val_fraction=0.05, seed=1234, progress=False,
                         **changes)


def test_data_prepare_cannot_replace_the_data_a_training_reads(tiny_data, tmp_path, monkeypatch):
    """prepare --overwrite deleted the shards under a running training, whose data loader workers and each
    validation then opened the new ones by name: it trained on other data than its checkpoints record."""
    import sinktrain.train.run as run_module
    from sinktrain.data import prepare

    data = tmp_path / "data"
    shutil.copytree(tiny_data, data)
    before = snapshot(data)
    seen = {}
    build = run_module.build_trainer

    def trainer_that_prepares_first(*args, **kwargs):
        trainer = build(*args, **kwargs)
        fit = trainer.fit

        def fit_while_preparing(*a, **k):
            seen["same data"] = prepare(_books_config(data))  # nothing to write: a study beside this one
            with pytest.raises(FileExistsError) as refused:
                prepare(_books_config(data, overwrite=True, max_documents=5))
            seen["refusal"] = str(refused.value)
            seen["kept"] = snapshot(data) == before
            return fit(*a, **k)

        trainer.fit = fit_while_preparing
        return trainer

    monkeypatch.setattr(run_module, "build_trainer", trainer_that_prepares_first)
    train(tiny(data, tmp_path / "run", "trainer.max_steps=2", "checkpoint.every=0"))
    assert seen == {"same data": data, "kept": True, "refusal": (
        f"--out_dir {str(data)!r} holds the data a running sinktrain training reads; wait for it to end, or prepare "
        f"into another --out_dir")}
    # The training over, the lock is gone with it.
    prepare(_books_config(data, overwrite=True, max_documents=5))
    assert json.loads((data / "manifest.json").read_text())["splits"]["train"]["documents"] < 5


def test_a_training_does_not_start_on_data_being_prepared(tmp_path, monkeypatch, capsys):
    import sinktrain.data.preparation as preparation
    from sinktrain.data import prepare

    data, run = tmp_path / "data", tmp_path / "run"
    write = preparation.ShardWriter.write_document
    said = []

    def train_meanwhile(self, ids):
        if not said:
            said.append(main(["train", "--config", str(RECIPES / "tiny-cpu.yaml"), "--run-dir", str(run),
                              "--set", f"data.dir={data}"]))
            said.append(capsys.readouterr().err.strip())
        return write(self, ids)

    monkeypatch.setattr(preparation.ShardWriter, "write_document", train_meanwhile)
    prepare(_books_config(data, max_documents=5))
    assert said == [2, f"sinktrain train: error: data.dir {str(data)!r} is being prepared by another sinktrain "
                       f"process; wait for it to end, then train"]
    assert not run.exists() and (data / "manifest.json").is_file()
