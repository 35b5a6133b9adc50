"""Careless or hostile export targets: refused in one line, and the training run (or anything else) kept."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch

from crafted_pickle import Payload
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


def test_overwrite_never_deletes_another_model_or_files_an_export_does_not_write(tiny_run, tmp_path, capsys):
    """Every Hugging Face folder has a config.json: only one with sinktrain's block is an earlier export. Results
    given to the export, or a stream-eval output, inside the target are refused, not replaced with it."""
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text('{"model_type": "llama"}')
    (hf / "model.safetensors").write_bytes(b"weights")
    before = snapshot(hf)
    assert main(["export", str(tiny_run), str(hf), "--overwrite"]) == 2
    assert f"output folder {hf} is not an earlier export (no config.json with a sinktrain block)" in \
        capsys.readouterr().err
    assert snapshot(hf) == before
    out = tmp_path / "exp"
    assert main(["export", str(tiny_run), str(out)]) == 0
    capsys.readouterr()
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text('{"exp": {"0+24": {"ppl": 9.0}}}')
    before = snapshot(out)
    assert main(["export", str(tiny_run), str(out), "--overwrite", "--eval_results",
                 str(out / "eval" / "results.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: --eval_results {str(out / 'eval' / 'results.json')!r} lies inside output folder "
        f"{out}, which --overwrite replaces whole; move it out of there or choose another out_dir")
    assert main(["export", str(tiny_run), str(out), "--overwrite"]) == 2
    assert "also holds 'eval', which the export does not write" in capsys.readouterr().err
    assert snapshot(out) == before


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_overwrite_refuses_a_config_json_it_cannot_read(tiny_run, tmp_path, capsys, no_hang, odd_marker, kind):
    """A FIFO config.json hung the check for ever; one nested too deeply was a RecursionError traceback."""
    out = tmp_path / "hf"
    out.mkdir()
    odd_marker(out / "config.json", kind)
    assert main(["export", str(tiny_run), str(out), "--overwrite"]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: output folder {out} is not an earlier export (no config.json with a sinktrain "
        f"block); --overwrite replaces only those. Choose another out_dir")
    assert [p.name for p in out.iterdir()] == ["config.json"]


def test_an_export_folder_named_with_tex_is_exported(tiny_run, tmp_path, capsys):
    """Its name titles the loss curve: matplotlib read `$...$` as TeX and failed after the export was done."""
    out = tmp_path / "x$\\bad$"
    assert main(["export", str(tiny_run), str(out)]) == 0
    assert (out / "loss_curve.png").is_file() and (out / "model.safetensors").is_file()


def test_every_exported_file_has_the_usual_mode(tiny_run, tmp_path):
    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), str(out)]) == 0
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()}
    assert set(modes.values()) == {modes["config.json"]}, modes  # model.safetensors was 0600, the rest 0644


@pytest.mark.parametrize("content, message", [(None, "does not exist"), ("{garbage", "is not valid JSON"),
                                              ("[1, 2]", "is not a stream-eval results.json"),
                                              ("folder", "is a folder; pass the results.json stream-eval wrote in it")])
def test_bad_eval_results_fail_before_anything_is_written(tiny_run, tmp_path, capsys, content, message):
    results = tmp_path / "results.json"
    if content == "folder":  # it said "does not exist"
        results.mkdir()
    elif content is not None:
        results.write_text(content)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--eval-results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--eval-results" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == (["results.json"] if content is not None else [])


@pytest.mark.parametrize("content", ['{"m": {"piqa": "oops"}}', '{"m": {"piqa": {"acc": "high", "n": 5}}}',
                                     '{"m": {"0+24": {"ppl": 9.1}}}', "folder"],
                         ids=["scores-not-a-mapping", "acc-not-a-number", "a-stream-eval-results", "folder"])
def test_bad_zeroshot_results_fail_in_one_line_before_anything_is_written(tiny_run, tmp_path, capsys, content):
    """They ended in an AttributeError or TypeError, and stream-eval's results.json gave an empty table."""
    results = tmp_path / "zs"
    results.mkdir()
    if content != "folder":
        results = results / "results.json"
        results.write_text(content)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--zeroshot-results", str(results)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sinktrain export: error: --zeroshot-results {results} is a folder; pass the results.json in it"
                   if content == "folder" else
                   f"sinktrain export: error: --zeroshot-results {results} is not {{model: {{task: {{acc, acc_norm, "
                   f"n}}}}}} over sinktrain's tasks; pass the results.json `sinktrain zeroshot` wrote")
    assert not (tmp_path / "hf").exists()


@pytest.mark.parametrize("option", ["--eval-results", "--zeroshot-results"])
def test_every_with_a_results_file_is_refused(tiny_run, tmp_path, capsys, option):
    # One evaluated model's results would otherwise be dropped silently, or claimed for every step.
    (tmp_path / "results.json").write_text("{}")
    assert main(["export", str(tiny_run), str(tmp_path / "steps"), "--every", "1", option,
                 str(tmp_path / "results.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"--every exports many checkpoints, and {option} holds the results of one evaluated model" in err
    assert "export that checkpoint alone (without --every)" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize("option", ["--eval-results", "--zeroshot-results"])
def test_a_results_file_that_is_a_fifo_is_named_for_what_it_is(tiny_run, tmp_path, capsys, option):
    """A FIFO (or device) given as the results was said not to exist."""
    fifo = tmp_path / "results.json"
    os.mkfifo(fifo)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), option, str(fifo)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"{option} " in err, err
    assert "results.json" in err and "is not a regular file (a FIFO)" in err and "does not exist" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize("every", [[], ["--every", "1"]], ids=["newest", "every"])
@pytest.mark.parametrize("marker", ["run.json", "config.yaml"])
def test_a_run_without_checkpoints_says_train_longer(tiny_run, tmp_path, capsys, marker, every):
    """With --every it exported nothing and exited 0 without a word."""
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(tiny_run / marker, run / marker)  # what `sinktrain train` writes before its first checkpoint
    assert main(["export", str(run), str(tmp_path / "hf"), *every]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sinktrain export: error: run directory {run} has no complete checkpoint yet; train until one is "
                   f"saved (checkpoint.every)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_half_written_checkpoint_names_a_command_line_fix(tiny_run, tmp_path, capsys):
    half = tmp_path / "step-00000002.tmp"
    shutil.copytree(tiny_run / "checkpoints" / "step-00000002", half)
    assert main(["export", str(half), str(tmp_path / "hf")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is not a complete checkpoint" in err
    assert "pass a complete step-XXXXXXXX folder, or the run directory for its newest" in err
    assert "latest_checkpoint" not in err


@pytest.mark.parametrize("bad", ["target", "eval-results", "zeroshot-results"])
def test_bad_target_or_results_are_refused_before_the_checkpoint_is_loaded(tiny_run, tmp_path, capsys,
                                                                           monkeypatch, bad):
    import sinktrain.export.folder as folder

    loaded = []
    monkeypatch.setattr(folder, "load_checkpoint_weights", lambda ckpt: loaded.append(ckpt))
    out = tmp_path / "hf"
    argv = ["export", str(tiny_run), str(out)]
    if bad == "target":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    else:
        argv += [f"--{bad}", str(tmp_path / "missing.json")]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    expected = {"target": "exists and is not empty; pass --overwrite", "eval-results": "missing.json' does not exist",
                "zeroshot-results": "missing.json does not exist"}[bad]
    assert len(err.splitlines()) == 1 and f"--{bad}" * (bad != "target") in err and expected in err, err
    assert loaded == []


def test_a_target_another_export_is_writing_is_refused_and_kept(tiny_run, tmp_path, capsys, hold_output):
    """Two exports into one folder shared one staging folder: the second cleared the first one's under it."""
    out = tmp_path / "hf"
    assert main(["export", str(tiny_run), str(out)]) == 0
    before = snapshot(out)
    capsys.readouterr()
    with hold_output(out):
        assert main(["export", str(tiny_run), str(out), "--overwrite"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (f"sinktrain export: error: out_dir {str(out)!r} is being written by another sinktrain process "
                   f"(pid 4242 on elsewhere); wait for it to end, or choose another out_dir")
    assert snapshot(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def two_checkpoint_run(tiny_run, tmp_path) -> Path:
    """A copy of tiny_run with a second, newer checkpoint (step 4: step 2's files under step 4's name and meta)."""
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    newest = run / "checkpoints" / "step-00000004"
    shutil.copytree(run / "checkpoints" / "step-00000002", newest)
    meta = json.loads((newest / "meta.json").read_text())
    (newest / "meta.json").write_text(json.dumps({**meta, "step": 4, "tokens_seen": 2 * meta["tokens_seen"]}))
    return run


def damage_checkpoint(ckpt: Path, damage: str) -> str:
    """Damage a checkpoint's contents (its files still load with weights_only=True); the reason export gives."""
    lightning, meta_file = ckpt / "lightning.ckpt", ckpt / "meta.json"
    state = torch.load(lightning, weights_only=True)
    meta = json.loads(meta_file.read_text())
    if damage == "a-list":
        torch.save([1], lightning)
        return f"checkpoint file {str(lightning)!r} holds a list, not Lightning's checkpoint of tensors; it is damaged"
    if damage == "no-state-dict":
        torch.save({"a": 1}, lightning)
        return (f"checkpoint file {str(lightning)!r} holds no state_dict, not Lightning's checkpoint of tensors; it "
                f"is damaged")
    if damage in ("ints", "cut-tensors", "integer-tensors"):
        change = {"ints": lambda v: 1, "cut-tensors": lambda v: v.flatten()[:3],
                  "integer-tensors": lambda v: v.to(torch.int64)}[damage]
        state["state_dict"] = {k: change(v) for k, v in state["state_dict"].items()}
        torch.save(state, lightning)
        found = {"ints": "int 1", "cut-tensors": "a float32 tensor of shape [3]",
                 "integer-tensors": "an int64 tensor of shape [50304, 64]"}[damage]
        return (f"checkpoint {str(ckpt)!r}: model tensor 'gpt_neox.embed_in.weight' is {found}, not a floating-point "
                f"tensor of shape [50304, 64]; it is damaged")
    if damage == "missing-tensor":
        del state["state_dict"]["model.lm_head.weight"]
        torch.save(state, lightning)
        return (f"checkpoint {str(ckpt)!r} lacks 1 model tensors (e.g. 'lm_head.weight'); it is damaged, or not a "
                f"sinktrain checkpoint of the model its meta.json describes")
    key, value = {"no-tokens-seen": ("tokens_seen", None), "tokens-seen-text": ("tokens_seen", "x"),
                  "no-world-size": ("world_size", None), "world-size-zero": ("world_size", 0)}[damage]
    meta_file.write_text(json.dumps({k: v for k, v in meta.items() if k != key} if value is None else
                                    {**meta, key: value}))
    least = 0 if key == "tokens_seen" else 1
    found = f"lacks {key}" if value is None else f"has {key} {value!r}, not a whole number >= {least}"
    return f"{meta_file} {found}; the checkpoint is damaged"


DAMAGES = ["a-list", "no-state-dict", "ints", "cut-tensors", "integer-tensors", "missing-tensor", "no-tokens-seen",
           "tokens-seen-text", "no-world-size", "world-size-zero"]


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_checkpoint_contents_are_one_line_naming_the_newest_intact_one(tiny_run, tmp_path, capsys, damage):
    """They were tracebacks: TypeError, KeyError 'state_dict', AttributeError is_floating_point, a size mismatch
    from load_state_dict, KeyError 'tokens_seen'; int64 weights were even exported, silently cast."""
    run = two_checkpoint_run(tiny_run, tmp_path)
    reason = damage_checkpoint(run / "checkpoints" / "step-00000004", damage)
    before = snapshot(run)
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: {reason}; the newest intact one is {run / 'checkpoints' / 'step-00000002'}: "
        f"pass it to export that step")
    assert snapshot(run) == before and sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    assert main(["export", str(run / "checkpoints" / "step-00000002"), str(tmp_path / "hf")]) == 0


def test_an_unsafe_older_checkpoint_is_passed_over_in_the_hint(tiny_run, tmp_path, capsys):
    """The hint's search for an intact older checkpoint met a crafted one, whose refusal replaced the message."""
    run = two_checkpoint_run(tiny_run, tmp_path)
    reason = damage_checkpoint(run / "checkpoints" / "step-00000004", "no-state-dict")
    marker = tmp_path / "code-ran"
    torch.save({"state_dict": Payload(marker)}, run / "checkpoints" / "step-00000002" / "lightning.ckpt")
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; no older checkpoint is intact: "
                                               f"restore this one from a copy, or train the run again")
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["no-state-dict", "cut-tensors"])
def test_a_damaged_only_checkpoint_names_the_fix(tiny_run, tmp_path, capsys, damage):
    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    ckpt = run / "checkpoints" / "step-00000002"
    reason = damage_checkpoint(ckpt, damage)
    assert main(["export", str(run), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; no older checkpoint is intact: "
                                               f"restore this one from a copy, or train the run again")
    alone = tmp_path / "copied" / "step-00000002"  # a checkpoint copied out of its run
    shutil.copytree(ckpt, alone)
    reason = reason.replace(str(ckpt), str(alone))
    assert main(["export", str(alone), str(tmp_path / "hf")]) == 2
    assert capsys.readouterr().err.strip() == (f"sinktrain export: error: {reason}; export another checkpoint of its "
                                               f"run, or restore this one from a copy")
    assert not (tmp_path / "hf").exists()


def test_damaged_contents_are_an_unreadable_checkpoint_for_resume_too(tiny_run, tmp_path):
    """verify_checkpoint, which `--resume auto` uses to fall back past a damaged checkpoint, checks the weights."""
    from sinktrain.train.checkpoint import UnreadableCheckpointError, load_checkpoint_weights, verify_checkpoint

    run = two_checkpoint_run(tiny_run, tmp_path)
    newest = run / "checkpoints" / "step-00000004"
    reason = damage_checkpoint(newest, "cut-tensors")
    for check in (verify_checkpoint, load_checkpoint_weights):
        with pytest.raises(UnreadableCheckpointError) as e:
            check(newest)
        assert str(e.value) == reason


def test_every_checks_every_checkpoint_before_the_first_export(tiny_run, tmp_path, capsys):
    """A truncated newest checkpoint failed after the older steps were written: a rerun needed --overwrite."""
    run = two_checkpoint_run(tiny_run, tmp_path)
    newest = run / "checkpoints" / "step-00000004" / "lightning.ckpt"
    newest.write_bytes(newest.read_bytes()[:10000])
    assert main(["export", str(run), str(tmp_path / "steps"), "--every", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"sinktrain export: error: checkpoint file {str(newest)!r} "
                                                         f"cannot be read (")
    assert err.endswith("it is truncated or damaged; --every exports nothing until every checkpoint it takes loads: "
                        f"restore that one from a copy, or move it out of {run / 'checkpoints'} and run again"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
    damage_checkpoint(run / "checkpoints" / "step-00000002", "ints")  # damaged contents too, not only files
    shutil.copy(run / "checkpoints" / "step-00000002" / "lightning.ckpt", newest)
    assert main(["export", str(run), str(tmp_path / "steps"), "--every", "1"]) == 2
    assert "model tensor 'gpt_neox.embed_in.weight' is int 1" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


@pytest.fixture
def no_load(monkeypatch):
    """Records each checkpoint export would load: results files are checked before it."""
    import sinktrain.export.folder as folder

    loaded = []
    monkeypatch.setattr(folder, "load_checkpoint_weights", lambda ckpt: loaded.append(ckpt))
    return loaded


STREAM_RESULTS = '{"exp": {"4+60": {"ppl": 12.3}}}'


@pytest.mark.parametrize("results, run_json, problem", [
    ('{"exp": {"4+60": {"ppl": null}}}', None, "results: exp 4+60 has ppl None, not a number"),
    ('{"exp": {"4+60": {"ppl": "abc"}}}', None, "results: exp 4+60 has ppl 'abc', not a number"),
    ('{"exp": {"4+60": {"ppl": NaN}}}', None, "results: exp 4+60 has ppl nan, not a positive finite number"),
    ('{"exp": {"4+60": {"ppl": Infinity}}}', None, "results: exp 4+60 has ppl inf, not a positive finite number"),
    ('{"exp": {"4+60": {"ppl": 0}}}', None, "results: exp 4+60 has ppl 0, not a positive finite number"),
    (STREAM_RESULTS, "[1]", "run.json: holds a list, not {'config': {'text': ...}}"),
    (STREAM_RESULTS, '{"config": 5}', "run.json: is not the run.json stream-eval writes: 'config' is not a mapping"),
    (STREAM_RESULTS, '{"config": {"text": [1]}}',
     "run.json: is not the run.json stream-eval writes: config.text is [1], not a name"),
    (STREAM_RESULTS, "{garbage", "run.json: is not valid JSON (Expecting property name enclosed in double quotes: "
     "line 1 column 2 (char 1))"),
], ids=["ppl-null", "ppl-text", "ppl-nan", "ppl-infinite", "ppl-zero",
        "run-json-a-list", "run-json-config-a-number", "run-json-text-a-list",
        "run-json-garbage"])
def test_bad_eval_results_or_their_run_json_are_one_line_before_anything_is_loaded(
        tiny_run, tmp_path, capsys, no_load, results, run_json, problem):
    """They were AttributeError and TypeError tracebacks, json's bare 'Expecting property name' naming no file, or
    'could not convert string to float' once the checkpoint had loaded."""
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "results.json").write_text(results)
    if run_json is not None:
        (ev / "run.json").write_text(run_json)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--eval_results", str(ev / "results.json")]) == 2
    where, what = problem.split(": ", 1)
    opt = f"--eval-results {str(ev / 'results.json')!r}"
    expected = (f"{opt} is not a stream-eval results.json: {what}; pass the results.json stream-eval wrote"
                if where == "results" else
                f"{ev / 'run.json'}, next to {opt}, {what}; restore it from a copy, or delete it (it only names the "
                f"text the results were measured on)")
    assert capsys.readouterr().err.strip() == f"sinktrain export: error: {expected}"
    assert no_load == [] and sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


ZEROSHOT_RESULTS = '{"m": {"piqa": {"acc": 0.5, "acc_norm": 0.6, "n": 10}}}'


@pytest.mark.parametrize("run_json, problem", [
    ("[1]", "holds a list, not {'config': ..., 'splits': ...}"),
    ('{"config": 5}', "is not the run.json `sinktrain zeroshot` writes: 'config' is not a mapping"),
    ('{"config": {"limit": "x"}}',
     "is not the run.json `sinktrain zeroshot` writes: config.limit is 'x', not a positive whole number"),
    ('{"splits": [1]}', "is not the run.json `sinktrain zeroshot` writes: 'splits' is not {task: split}"),
    ("{garbage", "is not valid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
], ids=["a-list", "config-a-number", "limit-text", "splits-a-list", "garbage"])
def test_a_bad_zeroshot_run_json_is_one_line_before_anything_is_loaded(tiny_run, tmp_path, capsys, no_load, run_json,
                                                                       problem):
    """They were AttributeError and TypeError tracebacks."""
    zs = tmp_path / "zs"
    zs.mkdir()
    (zs / "results.json").write_text(ZEROSHOT_RESULTS)
    (zs / "run.json").write_text(run_json)
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--zeroshot_results", str(zs / "results.json")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: {zs / 'run.json'}, next to --zeroshot-results {zs / 'results.json'}, {problem}; "
        f"restore it from a copy, or delete it (it only records the splits scored and --limit)")
    assert no_load == [] and sorted(p.name for p in tmp_path.iterdir()) == ["zs"]


@pytest.mark.parametrize("scores, problem", [
    ('{"acc": NaN, "acc_norm": 0.5, "n": 5}', "acc nan, not an accuracy in [0, 1]"),
    ('{"acc": 0.5, "acc_norm": Infinity, "n": 5}', "acc_norm inf, not an accuracy in [0, 1]"),
    ('{"acc": 1.5, "acc_norm": null, "n": 5}', "acc 1.5, not an accuracy in [0, 1]"),
    ('{"acc": 0.5, "acc_norm": 0.5, "n": -5}', "n -5, not a count of examples (0 or more)"),
], ids=["acc-nan", "acc-norm-infinite", "acc-above-1", "n-negative"])
def test_zeroshot_scores_no_scoring_gives_are_one_line_before_anything_is_loaded(tiny_run, tmp_path, capsys, no_load,
                                                                                scores, problem):
    """They went into the model card as results (`value: .nan`)."""
    results = tmp_path / "results.json"
    results.write_text(f'{{"m": {{"piqa": {scores}}}}}')
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), "--zeroshot-results", str(results)]) == 2
    assert capsys.readouterr().err.strip() == (
        f"sinktrain export: error: --zeroshot-results {results}: m piqa has {problem}; pass the results.json "
        f"`sinktrain zeroshot` wrote")
    assert no_load == [] and sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]


@pytest.mark.parametrize("option, deep", [("--eval-results", "results.json"), ("--eval-results", "run.json"),
                                           ("--zeroshot-results", "results.json"), ("--zeroshot-results", "run.json")])
def test_results_nested_too_deeply_are_one_line_before_anything_is_loaded(tiny_run, tmp_path, capsys, no_load,
                                                                          odd_marker, option, deep):
    """They were RecursionError tracebacks."""
    ev = tmp_path / "ev"
    ev.mkdir()
    (ev / "results.json").write_text(STREAM_RESULTS if option == "--eval-results" else ZEROSHOT_RESULTS)
    (ev / "run.json").write_text("{}")
    odd_marker(ev / deep, "deep")
    results = ev / "results.json"
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), option, str(results)]) == 2
    err = capsys.readouterr().err.strip()
    named = f"{option} {str(results)!r}" if option == "--eval-results" else f"{option} {results}"
    expected = {("--eval-results", "results.json"): f"{named} is not valid JSON (nested too deeply to read); pass a "
                                                    f"stream-eval results.json",
                ("--zeroshot-results", "results.json"): f"{named} is not JSON (nested too deeply to read); pass the "
                                                        f"results.json `sinktrain zeroshot` wrote"}.get((option, deep))
    if expected is None:
        fix = ("names the text the results were measured on" if option == "--eval-results" else
               "records the splits scored and --limit")
        expected = (f"{ev / 'run.json'}, next to {named}, is not valid JSON (nested too deeply to read); restore it "
                    f"from a copy, or delete it (it only {fix})")
    assert err == f"sinktrain export: error: {expected}"
    assert no_load == [] and sorted(p.name for p in tmp_path.iterdir()) == ["ev"]


@pytest.mark.parametrize("args, expected", [
    (["--push_to_hub", "bad repo id"], "--push_to_hub 'bad repo id' is not a hub repo id (Repo id must use "
     "alphanumeric chars, '-', '_' or '.'. The name cannot start or end with '-' or '.' and the maximum length is 96: "
     "'bad repo id'.); pass one such as user/pythia-160m-sink"),
    (["--push_to_hub", "a/b/c"], "--push_to_hub 'a/b/c' is not a hub repo id (Repo id must be in the form 'repo_name' "
     "or 'namespace/repo_name': 'a/b/c'.); pass one such as user/pythia-160m-sink"),
    (["--push_to_hub", ""], "--push_to_hub is empty; pass the hub repo id to push to, e.g. user/pythia-160m-sink, or "
     "leave the flag out"),
    (["--push_to_hub", "user/m", "--revision", "bad..rev~^:"], "--revision 'bad..rev~^:' is not a valid branch name "
     "(it holds ':^~'); pass a name such as step1000, or leave it out to push to main"),
    (["--push_to_hub", "user/m", "--revision", "step1/"], "--revision 'step1/' is not a valid branch name (it ends "
     "with '/'); pass a name such as step1000, or leave it out to push to main"),
    (["--push_to_hub", "user/m", "--revision", "a.lock"], "--revision 'a.lock' is not a valid branch name (it ends "
     "with '.lock'); pass a name such as step1000, or leave it out to push to main"),
    (["--push_to_hub", "user/m", "--revision", "a b"], "--revision 'a b' is not a valid branch name (it holds ' '); "
     "pass a name such as step1000, or leave it out to push to main"),
    (["--push_to_hub", "user/m", "--revision", ""], "--revision '' is not a valid branch name (it is empty); pass a "
     "name such as step1000, or leave it out to push to main"),
], ids=["spaces", "two-slashes", "empty-repo", "dots-and-git-specials", "trailing-slash", "dot-lock", "space",
        "empty-revision"])
@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "push"])
def test_a_bad_hub_repo_id_or_branch_is_refused_before_the_export(tiny_run, tmp_path, capsys, no_load, args,
                                                                    expected, dry_run):
    """A dry run said it 'would upload 7 files to bad repo id@main'; a push failed only after the whole export, as a
    network or login error; an empty --push_to_hub pushed nothing without a word. (No upload can start here: the
    stubbed checkpoint load would stop the export first.)"""
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), *args, *(["--dry_run"] * dry_run)]) == 2
    assert capsys.readouterr().err.strip() == f"sinktrain export: error: {expected}"
    assert no_load == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args, named", [(["--dry_run"], "--dry_run only applies"),
                                         (["--revision", "step1", "--private"], "--revision and --private only apply")])
def test_hub_flags_without_push_to_hub_are_refused(tiny_run, tmp_path, capsys, no_load, args, named):
    """They were ignored: a --dry_run exported for real, and --private named nothing to keep private."""
    assert main(["export", str(tiny_run), str(tmp_path / "hf"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"sinktrain export: error: {named} with --push_to_hub; add --push_to_hub REPO_ID, or "
                          f"leave"), err
    assert no_load == [] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["step1000", "main", "feature/x-1", "v1.0"])
def test_a_valid_branch_name_is_accepted(name):
    from sinktrain.export.config import check_branch_name

    check_branch_name(name)
