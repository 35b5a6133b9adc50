"""Bad input: one line naming the problem and the fix, exit 2, and nothing written."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import pytest

from sinktrain.cli import main
from zeroshot_helpers import SAMPLE, SINK_IDS, save_folder


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
    (out / "run.json").write_text('{"config": {}, "splits": {}}')
    err = refused(capsys, [str(model_dirs["vanilla"]), str(broken), "--tasks", "piqa", "--out", str(out),
                           "--overwrite"])
    assert f"cannot load model {str(broken)!r}" in err
    assert (out / "results.json").read_text() == "{}"
    err = refused(capsys, [str(tmp_path / "nowhere"), "--tasks", "piqa", "--out", str(out), "--overwrite"])
    assert "does not exist" in err


def test_a_model_folder_without_safetensors_weights_is_refused_before_any_scoring(model_dirs, tmp_path, capsys):
    """No weights, or only a pickle (pytorch_model.bin, which sinktrain never unpickles): refused up front, so an
    earlier run's results are not replaced by the models scored before it."""
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "run.json").write_text('{"config": {}, "splits": {}}')
    for pickle in (False, True):
        bare = tmp_path / f"bare-{pickle}"
        shutil.copytree(model_dirs["vanilla"], bare)
        (bare / "model.safetensors").unlink()
        if pickle:
            (bare / "pytorch_model.bin").write_bytes(b"not read")
        err = refused(capsys, [str(model_dirs["vanilla"]), str(bare), "--tasks", "piqa", "--data-dir", str(SAMPLE),
                               "--out", str(out), "--overwrite"])
        held = " (it holds pytorch_model.bin, a pickle, which sinktrain never loads)" if pickle else ""
        assert err == (f"sinktrain zeroshot: error: cannot load model {str(bare)!r}: the folder has no .safetensors "
                       f"weights{held}; export or save it with safetensors")
    assert (out / "results.json").read_text() == "{}"


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
    assert ("exists and is not empty; pass --overwrite to replace it (its results once the first model is scored)"
            in refused(capsys, args))
    assert "not an earlier zeroshot output (no tasks/ or zeroshot run.json)" in refused(capsys, [*args, "--overwrite"])
    assert [p.name for p in mine.iterdir()] == ["notes.txt"] and (mine / "notes.txt").read_text() == "my notes"
    stream = tmp_path / "stream"  # another verb's output: stream-eval writes results.json and run.json too
    (stream / "nll").mkdir(parents=True)
    (stream / "results.json").write_text("{}")
    (stream / "run.json").write_text('{"config": {}, "text": {}}')
    args = [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out", str(stream)]
    assert "not an earlier zeroshot output (no tasks/ or zeroshot run.json)" in refused(capsys, [*args, "--overwrite"])
    assert sorted(p.name for p in stream.iterdir()) == ["nll", "results.json", "run.json"]


@pytest.mark.parametrize("kind", ["fifo", "deep"])
def test_overwrite_refuses_a_run_json_it_cannot_read(model_dirs, tmp_path, capsys, no_hang, odd_marker, kind):
    """A FIFO run.json hung the check for ever; one nested too deeply was a RecursionError traceback."""
    out = tmp_path / "zs"
    out.mkdir()
    odd_marker(out / "run.json", kind)
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out",
                           str(out), "--overwrite"])
    assert err == (f"sinktrain zeroshot: error: output folder {out} is not an earlier zeroshot output (no tasks/ or "
                   f"zeroshot run.json); --overwrite replaces only those. Choose another --out")
    assert [p.name for p in out.iterdir()] == ["run.json"]


def test_overwrite_never_writes_through_a_link_in_the_earlier_output(model_dirs, tmp_path, capsys):
    """zeroshot writes into its --out in place: a link there (tasks/ itself, or a task YAML in it) made it write
    into the folder or file the link points to."""
    mine = tmp_path / "mytasks"
    mine.mkdir()
    (mine / "piqa.yaml").write_text("MINE")
    out = tmp_path / "zo"
    out.mkdir()
    (out / "tasks").symlink_to(mine)
    args = [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out", str(out), "--overwrite"]
    assert refused(capsys, args) == (f"sinktrain zeroshot: error: output folder {out}: 'tasks' is a symbolic link (to "
                                     f"{str(mine)!r}); --overwrite would write through it: remove the link or choose "
                                     f"another --out")
    (out / "tasks").unlink()
    (out / "tasks").mkdir()
    (out / "tasks" / "piqa.yaml").symlink_to(mine / "piqa.yaml")
    assert "'tasks/piqa.yaml' is a symbolic link" in refused(capsys, args)
    assert (mine / "piqa.yaml").read_text() == "MINE" and [p.name for p in mine.iterdir()] == ["piqa.yaml"]


@pytest.mark.parametrize("name, kind, sink_ids, room", [("vanilla", "none", [], 32), ("sink2", "token", SINK_IDS, 31)])
def test_answer_longer_than_the_context_is_refused_before_any_scoring(model_dirs, tmp_path, capsys, name, kind,
                                                                      sink_ids, room):
    """PIQA's first 50 answers run to 101 tokens: a 32-token model cannot score them. lm-eval would stop on a bare
    assertion (vanilla), a sink model on its first long request; both only after the models before it scored."""
    short = save_folder(tmp_path, f"short-{name}", kind, sink_ids, seed=7, max_seq_len=32)
    capsys.readouterr()  # the folder's own save progress
    out = tmp_path / "o"
    err = refused(capsys, [str(model_dirs["vanilla"]), str(short), "--tasks", "arc_easy,piqa", "--limit", "50",
                           "--data-dir", str(SAMPLE), "--out", str(out)])
    assert err.startswith(f"sinktrain zeroshot: error: model {str(short)!r}: a piqa answer is 101 tokens long, "
                          f"more than the {room} the model's 32-token context leaves"), err
    assert "drop that task from --tasks" in err
    assert not out.exists()  # the first model was not scored either


def test_model_without_tokenizer_is_refused_before_the_first_model_scores(model_dirs, tmp_path, capsys):
    bare = tmp_path / "bare"
    shutil.copytree(model_dirs["vanilla"], bare)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        (bare / f).unlink()
    out = tmp_path / "o"
    err = refused(capsys, [str(model_dirs["vanilla"]), str(bare), "--tasks", "piqa", "--limit", "2",
                           "--data-dir", str(SAMPLE), "--out", str(out)])
    assert f"model {str(bare)!r} has no tokenizer files" in err
    assert not out.exists()


def test_model_with_its_own_code_is_refused_without_asking(model_dirs, tmp_path, capsys, monkeypatch):
    """transformers would ask on stdin whether to run the folder's code; sinktrain never runs it."""
    custom = tmp_path / "custom"
    shutil.copytree(model_dirs["vanilla"], custom)
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="custom_arch", auto_map={"AutoConfig": "custom.Config",
                                                      "AutoModelForCausalLM": "custom.Model"})
    (custom / "config.json").write_text(json.dumps(config))
    ran = tmp_path / "code-ran"
    (custom / "custom.py").write_text(f"open({str(ran)!r}, 'w').write('x')\n")
    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # a prompt answered yes would run it
    err = refused(capsys, [str(custom), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out", str(tmp_path / "o")])
    assert f"cannot load model {str(custom)!r}" in err and "never runs a model's own code" in err
    assert not ran.exists() and not (tmp_path / "o").exists()


def test_table_states_the_examples_really_scored():
    from sinktrain.zeroshot import markdown_table

    whole = {"m": {"piqa": {"acc": 0.5, "acc_norm": 0.5, "n": 50}}}
    table = markdown_table(whole, {"piqa": "validation"}, limit=1000)  # the sample has 50 rows: none left out
    assert "1000" not in table and "Limited run" not in table and "| PIQA | 50 |" in table
    cut = {"m": {"piqa": {"acc": 0.5, "acc_norm": 0.5, "n": 20}}}
    assert "Limited run: only the first 20 examples" in markdown_table(cut, {"piqa": "validation"}, limit=20)


def test_without_lm_eval_the_extra_is_named(model_dirs, tmp_path, capsys, monkeypatch):
    """zeroshot() imported lm-eval before checking for it: an install without the extra got a traceback."""
    import importlib.util
    import sys

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "lm_eval" else real(name, *a))
    for name in {"lm_eval", "lm_eval.tasks", *(m for m in sys.modules if m.startswith("lm_eval."))}:
        monkeypatch.setitem(sys.modules, name, None)  # `import lm_eval...` raises ImportError, as when not installed
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--out", str(tmp_path / "o")])
    assert err == "sinktrain zeroshot: error: zero-shot evaluation needs lm-evaluation-harness; pip install " \
                  "'sinktrain[zeroshot]'"


def test_without_accelerate_the_extra_is_named(model_dirs, tmp_path, capsys, monkeypatch):
    """lm-eval installs without accelerate (only its own [hf] extra has it) and its HF model imports it: a
    `pip install lm-eval` ended in a traceback, in a study after the training."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "accelerate" else real(name, *a))
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--out", str(tmp_path / "o")])
    assert err == "sinktrain zeroshot: error: zero-shot evaluation needs accelerate; pip install 'sinktrain[zeroshot]'"
    assert not (tmp_path / "o").exists()


def hostile_arrow_target(tmp_path) -> tuple:
    """A path that, pasted into YAML as text, adds `process_docs: !function <tmp>/evil.f`: lm-eval's loader then
    imports evil.py and runs it. evil.py leaves a file behind when it runs."""
    evil = tmp_path / "evil.py"
    evil.write_text("open(__file__ + '.ran', 'w').write('ran')\ndef f(docs):\n    return docs\n")
    target = Path(f"{tmp_path}/x\nprocess_docs: !function {tmp_path}/evil.f\n#/d.arrow")
    target.parent.mkdir(parents=True)
    return target, tmp_path / "evil.py.ran"


def test_task_yaml_quotes_data_paths_so_lm_eval_runs_no_code_from_them(tmp_path):
    from lm_eval.tasks._yaml_loader import load_yaml  # the loader lm-eval reads task YAMLs with (!function)

    from sinktrain.zeroshot.tasks import write_local_task

    target, ran = hostile_arrow_target(tmp_path)
    plain = tmp_path / "data #1" / "d.arrow"  # a '#' used to start a YAML comment
    config = load_yaml(write_local_task("piqa", "validation", [target, plain], tmp_path / "tasks"))
    assert config["dataset_kwargs"] == {"data_files": {"validation": [str(target), str(plain)]}}
    assert "process_docs" not in config or not callable(config["process_docs"])
    assert not ran.exists()


def test_data_dir_file_leading_to_a_path_with_a_newline_is_refused(model_dirs, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    target, ran = hostile_arrow_target(tmp_path)
    arrow = data / "piqa" / "plain_text" / "validation" / "data-00000-of-00001.arrow"
    shutil.move(arrow, target)
    arrow.symlink_to(target)
    out = tmp_path / "o"
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(data), "--out", str(out)])
    assert f"--data-dir: {str(arrow)!r} (the copy of piqa) leads to {str(target)!r}, a path with a control " \
           "character; copy the file to a plain path" in err
    assert not ran.exists() and not out.exists()


def test_an_output_another_run_is_writing_is_refused_before_any_scoring(model_dirs, tmp_path, capsys, hold_output):
    """zeroshot rewrites its results after each model: two runs into one --out mixed their results.json."""
    out = tmp_path / "zs"
    (out / "tasks").mkdir(parents=True)
    (out / "results.json").write_text("earlier")
    with hold_output(out):
        err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(SAMPLE), "--out",
                               str(out), "--overwrite"])
    assert err == (f"sinktrain zeroshot: error: --out {str(out)!r} is being written by another sinktrain process "
                   f"(pid 4242 on elsewhere); wait for it to end, or choose another --out")
    assert (out / "results.json").read_text() == "earlier" and sorted(p.name for p in out.iterdir()) == [
        "results.json", "tasks"]


def test_offline_without_data_dir_names_the_flag(model_dirs, tmp_path, capsys, monkeypatch):
    """Without --data-dir lm-eval downloads each task; offline, its one line named no way out."""
    import sinktrain.zeroshot.run as run_module

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'baber/piqa' on the Hub (OfflineModeIsEnabled)")

    monkeypatch.setattr(run_module, "task_requests", offline)
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--out", str(tmp_path / "o")])
    assert err == ("sinktrain zeroshot: error: Couldn't reach 'baber/piqa' on the Hub (OfflineModeIsEnabled); "
                   "offline, pass --data-dir with datasets.save_to_disk copies of the tasks (data/zeroshot in the "
                   "sinktrain repository holds samples)")
    assert not (tmp_path / "o").exists()


def copy_with(folder, dest, cut_to: int | None = None, cut=("gpt_neox.embed_in.weight",), **config):
    """A copy of a model folder with `config`'s values in config.json and the named weights cut to `cut_to` rows."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(folder, dest)
    raw = json.loads((dest / "config.json").read_text())
    (dest / "config.json").write_text(json.dumps({**raw, **config}))
    if cut_to is not None:
        weights = load_file(dest / "model.safetensors")
        for name in cut:
            weights[name] = weights[name][:cut_to].clone()
        save_file(weights, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


def never_scored(monkeypatch):
    """Fails the test if any model is loaded for scoring: a bad model must be refused before the first one scores."""
    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded before the bad input was refused")

    monkeypatch.setattr("sinktrain.zeroshot.lm.load", refuse)


def refused_after_a_sound_model(capsys, model_dirs, bad, out) -> str:
    """zeroshot of a sound model, then `bad`: the refusal line, which must come before anything is written."""
    err = refused(capsys, [str(model_dirs["vanilla"]), str(bad), "--tasks", "piqa", "--data-dir", str(SAMPLE),
                           "--out", str(out)])
    assert not out.exists()
    return err


def test_a_config_transformers_rejects_is_one_informative_line(model_dirs, tmp_path, capsys, monkeypatch):
    """transformers' validation error opens with a line ending in a colon; that line alone named nothing."""
    never_scored(monkeypatch)
    bad = copy_with(model_dirs["vanilla"], tmp_path / "heads", num_attention_heads=3)
    err = refused_after_a_sound_model(capsys, model_dirs, bad, tmp_path / "o")
    assert err == (f"sinktrain zeroshot: error: cannot load model {str(bad)!r}: {bad}/config.json is invalid: The "
                   f"hidden size is not divisible by the number of attention heads! Make sure to update them; fix "
                   f"config.json (or export the model again)")


def test_first_line_keeps_the_line_after_a_dangling_colon():
    from sinktrain.zeroshot.checks import first_line

    e = ValueError("cannot load model 'w/h': Class validation error for validator 'validate_architecture':\n"
                   "    ValueError: The hidden size is not divisible by the number of attention heads!\n\nmore")
    assert first_line(e) == ("Class validation error for validator 'validate_architecture': ValueError: The hidden "
                             "size is not divisible by the number of attention heads!")
    assert first_line(ValueError("one\ntwo")) == "one" and first_line(ValueError("")) == "ValueError"


def test_weights_of_other_sizes_than_the_config_are_refused_before_any_scoring(model_dirs, tmp_path, capsys,
                                                                               monkeypatch):
    never_scored(monkeypatch)
    bad = copy_with(model_dirs["vanilla"], tmp_path / "cut", cut_to=1000)
    err = refused_after_a_sound_model(capsys, model_dirs, bad, tmp_path / "o")
    assert err == (f"sinktrain zeroshot: error: cannot load model {str(bad)!r}: its weights do not fit its config.json "
                   f"(gpt_neox.embed_in.weight is [1000, 64] in model.safetensors, config.json calls for [50304, 64]); "
                   f"config.json and the weights come from different models (or one was edited): export the model "
                   f"again, or put back the config.json saved with these weights")


def test_a_tokenizer_past_the_vocabulary_is_refused_before_any_scoring(model_dirs, tmp_path, capsys, monkeypatch):
    """config and weights agree on 1000 rows, the tokenizer has 50277 ids: the model failed with an IndexError
    after the models before it were scored."""
    never_scored(monkeypatch)
    bad = copy_with(model_dirs["vanilla"], tmp_path / "small", cut_to=1000,
                    cut=("gpt_neox.embed_in.weight", "embed_out.weight"), vocab_size=1000)
    err = refused_after_a_sound_model(capsys, model_dirs, bad, tmp_path / "o")
    assert err == (f"sinktrain zeroshot: error: the tokenizer of {bad} has 50277 ids but the model only 1000 embedding "
                   f"rows; zero-shot scoring reads the model's own tokenizer: save the one it was trained with into "
                   f"the model folder")


@pytest.mark.parametrize("stop", [KeyboardInterrupt, RuntimeError])
def test_a_run_stopped_while_scoring_leaves_nothing_a_rerun_trips_on(model_dirs, tmp_path, capsys, monkeypatch,
                                                                     stop):
    """tasks/ was written before the first model scored: after Ctrl-C (or a failure) the rerun was refused for a
    non-empty --out, and an earlier output given with --overwrite had its task files replaced."""
    import sinktrain.zeroshot.run as run_module

    def stopped(*args, **kwargs):
        raise stop("stopped while scoring")

    real = run_module.score_task
    monkeypatch.setattr(run_module, "score_task", stopped)
    out, earlier = tmp_path / "o", tmp_path / "earlier"
    (earlier / "tasks").mkdir(parents=True)
    files = {"results.json": "{}", "run.json": '{"config": {}, "splits": {}}', "tasks/piqa.yaml": "earlier"}
    for name, text in files.items():
        (earlier / name).write_text(text)
    args = [str(model_dirs["vanilla"]), "--tasks", "piqa", "--limit", "2", "--data-dir", str(SAMPLE)]
    for target, extra in ((out, []), (earlier, ["--overwrite"])):
        with pytest.raises(stop) if stop is RuntimeError else contextlib.nullcontext():
            assert main(["zeroshot", *args, "--out", str(target), *extra]) == 130
    assert not out.exists()
    assert {str(p.relative_to(earlier)): p.read_text() for p in earlier.rglob("*") if p.is_file()} == files
    monkeypatch.setattr(run_module, "score_task", real)
    capsys.readouterr()
    assert main(["zeroshot", *args, "--out", str(out)]) == 0  # the rerun, as given the first time
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "run.json", "table.md", "tasks"]
    assert json.loads((out / "run.json").read_text())["data"] == {"piqa": str(out / "tasks" / "piqa.yaml")}
    assert (out / "tasks" / "piqa.yaml").is_file()


def test_a_damaged_arrow_file_is_named(model_dirs, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    arrow = data / "piqa/plain_text/validation/data-00000-of-00001.arrow"
    arrow.write_bytes(b"garbage")
    err = refused(capsys, [str(model_dirs["vanilla"]), "--tasks", "piqa", "--data-dir", str(data),
                           "--out", str(tmp_path / "o")])
    assert err == (f"sinktrain zeroshot: error: --data-dir: {arrow} (the copy of piqa) is not a readable Arrow file "
                   f"(File is too small: 7); save it again with datasets' save_to_disk")
    assert not (tmp_path / "o").exists()


def test_an_out_inside_a_model_or_the_data_dir_is_refused(model_dirs, tmp_path, capsys):
    model = tmp_path / "model"
    shutil.copytree(model_dirs["vanilla"], model)
    data = tmp_path / "data"
    shutil.copytree(SAMPLE, data)
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    args = [str(model), "--tasks", "piqa", "--data-dir", str(data), "--out"]
    for out, lies in ((model / "sub", f"lies inside model {str(model)!r}"), (model, f"is model {str(model)!r}"),
                      (data / "piqa" / "x", f"lies inside --data-dir {str(data)!r}")):
        err = refused(capsys, [*args, str(out)])
        assert err == (f"sinktrain zeroshot: error: --out {str(out)!r} {lies}, which the run reads; choose an --out "
                       f"outside it")
    assert sorted(str(p) for p in tmp_path.rglob("*")) == before
