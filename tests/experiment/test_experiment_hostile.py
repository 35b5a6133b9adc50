"""The study runner: every stage's input is checked before the first stage, and a stage whose inputs changed
(longer training, re-prepared data) runs again instead of reporting old numbers next to new ones."""

import json
from pathlib import Path

import pytest
import yaml

import sinktrain.stream.evaluation  # noqa: F401  imported outside any test: its Progress binds sys.stderr at import
from sinktrain.cli import main

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "data" / "zeroshot"  # 50 validation rows per task
# The stream text: the first 20,000 characters of data/books/austen_persuasion.txt (about 4,600 tokens). A study
# reads its whole text before taking stream.tokens of it, twice per run (the check before training, stream-eval),
# and the whole book took 0.5 s each time.
OPENING = REPO / "tests" / "persuasion_opening.txt"

STUDY = {
    "name": "tiny",
    "recipe": str(REPO / "recipes/tiny-cpu.yaml"),
    "base": {"trainer": {"max_steps": 2, "val_every": 0, "log_every": 1}, "checkpoint": {"every": 2, "keep_last": 1},
             "logging": {"sink_score_every": 0}},
    "variants": {"vanilla": {"model": {"sink": {"kind": "none", "num_tokens": 0}}}},
    "data": {"sources": [str(REPO / "data/books/bierce_devils_dictionary.txt")], "txt_documents": "paragraphs",
             "val_fraction": 0.05},
    "stream": {"text": str(OPENING), "tokens": 200, "cache": 32, "sinks": [0, 1],
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
    if section == "zeroshot":  # a 32-token context: PIQA's sample answers run to 101 tokens
        study["base"]["model"] = {"max_seq_len": 32}
        study["zeroshot"] = {"limit": 50, "data_dir": str(SAMPLE)}
    study[section].setdefault("trainer", {}) if section == "base" else None
    target = study if section == "top" else study[section]["trainer"] if section == "base" else study[section]
    target[key] = value
    return study


def tiny_model(folder: Path, tokenizer: bool = True, seed: int = 1) -> Path:
    """A tiny GPT-NeoX folder as a pretrained model (with the bundled tokenizer unless `tokenizer` is False)."""
    from sinktrain.data import load_tokenizer
    from sinktrain.model import ModelConfig, build_model

    build_model(ModelConfig(preset="tiny"), seed=seed).save_pretrained(folder)
    if tokenizer:
        load_tokenizer().save_pretrained(folder)
    return folder


@pytest.mark.parametrize("section, key, value, message", [
    ("stream", "sinks", [0, 32], "sink count s=32 is not below the cache size C=32"),
    ("stream", "text", "/nonexistent/book.txt", "text source '/nonexistent/book.txt' does not exist"),
    ("stream", "mode", "fast", "unknown mode 'fast'"),
    ("stream", "cache", -5, "experiment stream: cache must be >= 1, got -5"),
    ("data", "sources", ["/nonexistent/corpus.jsonl"], "source '/nonexistent/corpus.jsonl' does not exist"),
    ("base", "accelerator", "gpu", "trainer.accelerator is gpu but this machine has no CUDA GPU"),
    ("stream", "overwrite", True, "experiment stream: 'overwrite' is set by the experiment; remove it"),
    ("stream", "device", "gpu", "experiment stream: stream.device 'gpu' is not a torch device"),
    ("stream", "tokenizer", "/nonexistent/tok", "experiment stream: tokenizer '/nonexistent/tok' does not exist"),
    ("variants", "vanilla", "token", "experiment variants.vanilla: 'token' is not a mapping"),
    ("top", "name", "../../escaped", "study name '../../escaped' must be letters, digits, - or _"),
    ("zeroshot", "tasks", ["piqa"], "experiment zeroshot: variant vanilla: a piqa answer is 101 tokens long, more "
                                    "than the 32 the model's 32-token context leaves"),
], ids=["sinks-ge-cache", "missing-text", "bad-mode", "negative-cache", "missing-source", "gpu-without-one",
        "stream-overwrite", "bad-stream-device", "stream-tokenizer-typo", "scalar-variant", "name-escapes-runs-dir",
        "zeroshot-answer-past-context"])
def test_every_stage_input_is_checked_before_the_first_stage(tmp_path, capfd, section, key, value, message):
    import torch

    if key == "accelerator" and torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, out = run_study(tmp_path, capfd, changed(STUDY, section, key, value))
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and message in err[0], out
    assert not (tmp_path / "runs").exists()  # no data prepared, nothing trained


@pytest.mark.parametrize("edit, message", [
    (lambda s: s["base"]["checkpoint"].update(every=0), "experiment variant 'vanilla': checkpoint.every is 0, so its "
     "run saves no checkpoint to export; set base.checkpoint.every to a number of steps"),
    (lambda s: s["base"].update(trainer=5), "experiment variant 'vanilla': train config: trainer is 5, not a mapping "
     "of its keys; give it as trainer: {key: value, ...} or set trainer.KEY"),
    (lambda s: s["variants"]["vanilla"].update(model=3), "experiment variant 'vanilla': train config: model is 3, "
     "not a mapping of its keys"),
    (lambda s: s["base"]["trainer"].update(max_stepz=3), "experiment variant 'vanilla': train config: unknown key "
     "'trainer.max_stepz'; accepted keys in trainer:"),
    (lambda s: s.update(variants={1: {"model": {"sink": {"kind": "none"}}}}), "is read as a number, not a name; "
     "config keys are names (quote it, '1', where it is meant as one)"),  # refused as the study file is read
    (lambda s: s["base"].update(run_dir="/tmp/elsewhere"), "experiment base: 'run_dir' is set by the experiment; "
     "remove it"),
    (lambda s: s["variants"]["vanilla"].update(data={"dir": "/tmp/d"}), "experiment variants.vanilla: 'data.dir' is "
     "set by the experiment; remove it (the study's own data: {dir: ...} takes prepared data)"),
    (lambda s: s["data"].update(val_fraction=2), "experiment data: val_fraction must be >= 0 and < 1, got 2.0"),
], ids=["no-checkpoints-to-export", "scalar-trainer", "scalar-variant-model", "misspelt-key", "number-as-name",
        "run-dir", "data-dir", "data-range"])
def test_a_training_section_that_cannot_be_trained_is_refused_naming_the_variant(tmp_path, capfd, edit, message):
    """These crashed (a traceback) or trained with defaults in silence; checkpoint.every 0 trained every variant,
    then failed at the export."""
    study = json.loads(json.dumps(STUDY))
    edit(study)
    code, out = run_study(tmp_path, capfd, study)
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and message in err[0], out
    assert "Traceback" not in out and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage, message", [
    ("cut-weights", "model.safetensors is damaged"),
    ("no-tokenizer", "has no tokenizer files; pass stream.tokenizer"),
    ("pickled-weights", "the folder has no .safetensors weights (it holds pytorch_model.bin, a pickle, which "
     "sinktrain never loads)"),
    ("garbage-tokenizer", "cannot read the tokenizer stored with"),  # a JSONDecodeError, once a second traceback
])
def test_pretrained_models_are_checked_before_training(tmp_path, capfd, damage, message):
    model = tiny_model(tmp_path / "pretrained", tokenizer=damage != "no-tokenizer")
    capfd.readouterr()
    if damage == "cut-weights":
        weights = model / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])  # a copy cut short
    if damage == "pickled-weights":  # trained every variant, then failed (transformers unpickled it)
        (model / "model.safetensors").rename(model / "pytorch_model.bin")
    if damage == "garbage-tokenizer":
        (model / "tokenizer.json").write_text("garbage{{{")
    code, out = run_study(tmp_path, capfd, {**STUDY, "pretrained": [str(model)]})
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and message in err[0] and str(model) in err[0], out
    assert "Traceback" not in out and not (tmp_path / "runs").exists()


def _tree(folder: Path) -> dict:
    """Every file and folder below `folder`: relative name -> bytes (None for a folder)."""
    return {str(p.relative_to(folder)): None if p.is_dir() else p.read_bytes() for p in sorted(folder.rglob("*"))}


def _older_study_file(name="tiny") -> str:
    """The experiment.yaml a study started by an older sinktrain wrote at its start (every field; export_every)."""
    return yaml.safe_dump({**STUDY, "name": name, "runs_dir": "runs", "export_every": None}, sort_keys=False)


@pytest.mark.parametrize("files, held", [
    ({"train/": None, "report.md": "precious", "experiment.yaml": "mine"}, "'experiment.yaml', 'report.md', 'train/'"),
    ({"data/manifest.json": "{}", "notes.txt": "mine"}, "'data/', 'notes.txt'"),
    ({"experiment.yaml": _older_study_file("other"), "report.md": "mine", "a": "", "b": ""},
     "'a', 'b', 'experiment.yaml' and 1 more"),
], ids=["bare-train-folder", "own-prepared-data", "another-studys-file"])
def test_a_folder_that_is_not_a_study_is_refused(tmp_path, capfd, files, held):
    """A bare train/ or data/manifest.json passed for an earlier study: the study ran and replaced the user's
    report.md and experiment.yaml."""
    root = tmp_path / "runs" / "tiny"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).mkdir() if text is None else (root / name).write_text(text)
    before = _tree(root)
    code, out = run_study(tmp_path, capfd, STUDY)
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and err == [
        f"sinktrain experiment: error: study folder {root} holds {held} but is not an earlier study (no stages/, "
        f"nor an experiment.yaml or train/ run a study wrote); a study would overwrite its files: choose another "
        f"name: or runs_dir:, or move them away"], out
    assert _tree(root) == before


@pytest.mark.parametrize("files", [
    {"stages/": None},
    {"experiment.yaml": _older_study_file(), "data/train-00000.bin": "", "train/vanilla/config.yaml": ""},
    {"train/vanilla/run.json": json.dumps({"format": "sinktrain-run/1"}), "data/manifest.json": "{}"},
], ids=["stages", "older-study-killed-in-data-or-training", "older-study-without-its-experiment-yaml"])
def test_an_earlier_study_is_taken_for_one(tmp_path, files):
    """stages/ is made before any stage writes; a study started by an older sinktrain made it with its first
    done-marker only, so one killed before its first export is known by its experiment.yaml or a training run."""
    from sinktrain.experiment.run import check_root

    root = tmp_path / "tiny"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).mkdir() if text is None else (root / name).write_text(text)
    check_root(root)


def _input_folder(tmp_path, what) -> Path:
    import shutil

    from sinktrain.data import load_tokenizer

    folder = tmp_path / "input"
    if what == "pretrained model":
        return tiny_model(folder)
    if what == "zeroshot.data_dir":
        shutil.copytree(SAMPLE / "piqa", folder / "piqa")
        return folder
    if what == "data.tokenizer":
        load_tokenizer().save_pretrained(folder)
        return folder
    folder.mkdir()
    shutil.copy(REPO / "data/books/bierce_devils_dictionary.txt", folder)
    return folder


def _reading(study, what, folder):
    study = json.loads(json.dumps(study))
    if what == "pretrained model":
        study["pretrained"] = [str(folder)]
    elif what == "data source":
        study["data"]["sources"] = [str(folder)]
    elif what == "data.dir":
        study["data"] = {"dir": str(folder)}
    elif what == "data.tokenizer":
        study["data"]["tokenizer"] = str(folder)
    elif what == "stream.text":
        study["stream"]["text"] = str(folder)
    else:
        study["zeroshot"] = {"tasks": ["piqa"], "limit": 4, "data_dir": str(folder)}
    return study


@pytest.mark.parametrize("what", ["pretrained model", "data source", "data.dir", "data.tokenizer", "stream.text",
                                  "zeroshot.data_dir"])
def test_a_study_folder_inside_a_folder_it_reads_is_refused_before_writing(tmp_path, capfd, what):
    """runs_dir inside a data source or a model folder passed every check, then wrote data, training and stages/
    into it and failed late, on a flag the study file does not have (`--out_dir ... is inside source`)."""
    folder = _input_folder(tmp_path, what)
    before = _tree(folder)
    capfd.readouterr()
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(_reading(STUDY, what, folder), sort_keys=False))
    code = main(["experiment", str(path), "--runs-dir", str(folder / "runs")])
    out = capfd.readouterr()
    err = [line for line in (out.out + out.err).splitlines() if "error" in line]
    assert code == 2 and err == [
        f"sinktrain experiment: error: experiment runs_dir {str(folder / 'runs')!r} puts the study folder "
        f"{folder / 'runs' / 'tiny'} inside {what} {str(folder)!r}, which it reads; choose a runs_dir outside it"], out
    assert _tree(folder) == before
    code = main(["experiment", str(path), "--runs-dir", str(tmp_path), "--name", folder.name])
    out = capfd.readouterr()
    assert code == 2 and (out.out + out.err).strip() == (
        f"sinktrain experiment: error: experiment runs_dir {str(tmp_path)!r} makes the study folder {folder} the "
        f"{what} {str(folder)!r} itself, which it reads; choose another name: or runs_dir:")
    assert _tree(folder) == before


def test_a_stage_whose_inputs_changed_runs_again(tmp_path, capfd):
    root = tmp_path / "runs" / "tiny"
    code, out = run_study(tmp_path, capfd, STUDY)
    assert code == 0, out
    first = json.loads((root / "report.json").read_text())

    code, out = run_study(tmp_path, capfd, STUDY)  # nothing changed: every stage skipped
    assert code == 0 and "export vanilla: done" in out and "stream-eval: done" in out, out

    # A damaged export (a copy cut short) is exported again; stream-eval skips, as the weights are the same again.
    weights = root / "export/vanilla/model.safetensors"
    whole = weights.read_bytes()
    weights.write_bytes(whole[:1000])
    code, out = run_study(tmp_path, capfd, STUDY)
    assert code == 0 and "export vanilla: model.safetensors is damaged" in out and "exporting it again" in out, out
    assert weights.read_bytes() == whole and "stream-eval: done" in out, out

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
    # Data changed without overwrite: refused with the experiment's own fix (not prepare's CLI flags), and the
    # study file beside the report still describes the run that made the report.
    before = {f: (root / f).read_bytes() for f in ("experiment.yaml", "report.md", "report.json")}
    other_data = json.loads(json.dumps(relearned))
    other_data["data"].update(overwrite=False, val_fraction=0.2)
    code, out = run_study(tmp_path, capfd, other_data)
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and len(err) == 1 and "--set data.overwrite=true" in err[0] and "--out_dir" not in err[0], out
    assert {f: (root / f).read_bytes() for f in before} == before

    # A run stopped before its last step under another recipe trains again, as a finished one would: resumed, its
    # weights would depend on the step at which it stopped. Only a longer max_steps resumes it.
    stopped = json.loads(json.dumps(relearned))
    stopped["base"]["trainer"]["max_steps"] = 6
    stopped["base"]["optim"] = {"lr": 2.0e-3}
    code, out = run_study(tmp_path, capfd, stopped)
    assert code == 0 and "it stopped at step 4 under another recipe (optim.lr 0.001 -> 0.002)" in out, out
    assert (root / "train/vanilla.old-3/checkpoints/step-00000004").is_dir()
    steps = [json.loads(line)["step"] for line in (root / "train/vanilla/metrics.jsonl").read_text().splitlines()]
    assert steps[0] == 2 and steps[-1] == 6  # logged every 2 steps from the start, not resumed at step 4
    assert yaml.safe_load((root / "experiment.yaml").read_text())["base"]["optim"]["lr"] == 2.0e-3


def test_stages_rerun_when_input_contents_change_or_a_stage_was_cut_short(tmp_path, capfd, monkeypatch):
    """Done-markers hold content hashes of the stream text, local pretrained folders and zero-shot data, and the
    zeroshot stage is done only once every variant was scored (it writes results.json after each model)."""
    import shutil

    from datasets import load_from_disk

    import sinktrain.zeroshot.run as zeroshot_run

    book = tmp_path / "book.txt"
    book.write_text((REPO / "data/books/austen_persuasion.txt").read_text()[:20000])
    data = tmp_path / "zs"
    shutil.copytree(SAMPLE / "piqa", data / "piqa")
    model = tiny_model(tmp_path / "pretrained")
    study = json.loads(json.dumps(STUDY))
    study["variants"]["sink1"] = {"model": {"sink": {"kind": "token", "num_tokens": 1}}}
    study["stream"]["text"] = str(book)
    study["pretrained"] = [str(model)]
    study["zeroshot"] = {"tasks": ["piqa"], "limit": 2, "batch_size": 2, "data_dir": str(data)}
    root = tmp_path / "runs" / "tiny"

    real, scored = zeroshot_run.score_task, []

    def killed_after_first_model(lm, ref, task, limit, manager):
        if scored:
            raise RuntimeError("killed")
        scored.append(task)
        return real(lm, ref, task, limit, manager)

    monkeypatch.setattr(zeroshot_run, "score_task", killed_after_first_model)
    with pytest.raises(RuntimeError, match="killed"):
        run_study(tmp_path, capfd, study)
    assert len(json.loads((root / "zeroshot/results.json").read_text())) == 1  # looks finished, is not
    monkeypatch.setattr(zeroshot_run, "score_task", real)
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0 and "stream-eval: done" in out and "zeroshot: 2 variants" in out, out
    assert len(json.loads((root / "zeroshot/results.json").read_text())) == 2

    book.write_text(book.read_text().replace("Sir Walter", "Sir Walther"))  # same path, other words
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0 and "stream-eval: done" not in out and "zeroshot: done" in out, out

    other = tiny_model(tmp_path / "other", seed=2)
    shutil.copy(other / "model.safetensors", model / "model.safetensors")  # same folder, new weights
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0 and "stream-eval: done" not in out and "zeroshot: done" in out, out

    split = data / "piqa/plain_text/validation"
    rows = load_from_disk(str(split)).select([1, 0, *range(2, 50)])  # same files, other first examples
    rows.save_to_disk(str(tmp_path / "resaved"))
    shutil.rmtree(split)
    shutil.copytree(tmp_path / "resaved", split)
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0 and "stream-eval: done" in out and "zeroshot: done" not in out, out


def test_a_dense_only_study_is_not_checked_against_a_cache(tmp_path):
    """stream-eval runs a dense-only evaluation on any text of 2+ tokens; the study's up-front checks used to hold
    its pretrained models' text to the default cache of 1024 tokens (200 here) and refuse it."""
    from sinktrain.config_io import build_dataclass
    from sinktrain.experiment.config import ExperimentConfig
    from sinktrain.experiment.run import preflight

    study = json.loads(json.dumps(STUDY))
    study["stream"] = {**study["stream"], "sinks": [], "baselines": ["dense"]}
    del study["stream"]["cache"]
    study["pretrained"] = [str(tiny_model(tmp_path / "pretrained"))]
    study["runs_dir"] = str(tmp_path / "runs")
    preflight(build_dataclass(ExperimentConfig, study))
    study["stream"]["baselines"] = ["dense", "recompute"]  # the recompute baseline does keep a cache of --cache
    with pytest.raises(ValueError, match="not more than the cache size 1024"):
        preflight(build_dataclass(ExperimentConfig, study))


def test_damaged_study_data_names_the_studys_fix(tmp_path):
    """prepare's refusals name its own flag (--overwrite true); a study takes data: {overwrite: true} instead."""
    from sinktrain.config_io import build_dataclass
    from sinktrain.experiment.config import ExperimentConfig
    from sinktrain.experiment.run import stage_data

    cfg = build_dataclass(ExperimentConfig, {**STUDY, "runs_dir": str(tmp_path / "runs")})
    stage_data(cfg)
    shard = cfg.data_dir / "train-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-2])
    with pytest.raises(FileExistsError) as refused:
        stage_data(cfg)
    assert str(refused.value) == (
        f"{cfg.data_dir} holds this dataset but it is damaged (the train shards hold {shard.stat().st_size:,} bytes, "
        f"not the {shard.stat().st_size + 2:,} of {(shard.stat().st_size + 2) // 2:,} tokens); to prepare it again "
        f"(and train every variant again), set overwrite: true under data: in the study file or pass --set "
        f"data.overwrite=true")


def _study_config(tmp_path, **data):
    from sinktrain.config_io import build_dataclass
    from sinktrain.experiment.config import ExperimentConfig

    return build_dataclass(ExperimentConfig, {**STUDY, "data": {**STUDY["data"], **data},
                                              "runs_dir": str(tmp_path / "runs")})


def _shard_inodes(cfg):
    return {p.name: p.stat().st_ino for p in cfg.data_dir.glob("*.bin")}


def test_under_torchrun_the_other_ranks_wait_for_the_data_the_study_describes(tmp_path, monkeypatch):
    """The other ranks waited for a manifest only: with data an overwrite was about to replace they went on at
    once and trained on the old data, rank 0 on the new."""
    import sinktrain.data.preparation as preparation
    import sinktrain.data.sources as sources
    import sinktrain.experiment.run as run_module
    from sinktrain.data import holds_dataset, prepare

    old = _study_config(tmp_path, max_documents=40)
    run_module.stage_data(old)  # (on one process) the data of the study before its sources changed
    cfg = _study_config(tmp_path, overwrite=True)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    waits, hashed = [], []
    hash_file = sources.file_sha256
    monkeypatch.setattr(sources, "file_sha256", lambda path: hashed.append(path) or hash_file(path))

    def rank_zero_prepares_meanwhile(seconds):
        waits.append(seconds)
        if len(waits) == 3:
            with monkeypatch.context() as m:  # rank 0's hashing is its own
                m.setattr(sources, "file_sha256", hash_file)
                prepare(cfg.prepare_config())

    monkeypatch.setattr(preparation.time, "sleep", rank_zero_prepares_meanwhile)
    run_module.stage_data(cfg)
    assert waits == [5.0] * 3 and holds_dataset(cfg.prepare_config())
    # The waiting rank hashed the study's one source once, not once per poll (a corpus read every five seconds).
    assert len(hashed) == 1 + 1  # (+1: holds_dataset just above)

    waits.clear()  # the data this study describes is there: no wait, and the old manifest would not have done
    run_module.stage_data(cfg)
    assert waits == []


def test_under_torchrun_rank_zero_does_not_rewrite_the_same_data(tmp_path, monkeypatch, capfd):
    """The other ranks cannot tell a rewrite of the same bytes from none, and would read it mid-rename."""
    from sinktrain.experiment.run import stage_data

    stage_data(_study_config(tmp_path))
    before = _shard_inodes(_study_config(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "2")
    cfg = _study_config(tmp_path, overwrite=True)
    stage_data(cfg)
    assert _shard_inodes(cfg) == before
    assert (f"[experiment] data: {cfg.data_dir} already holds this dataset, whole; under torchrun data.overwrite "
            f"prepares only data that differs (to fetch a hub source again, run `sinktrain data prepare "
            f"--overwrite true` first)") in capfd.readouterr().out
    monkeypatch.delenv("WORLD_SIZE")
    stage_data(cfg)  # on one process, overwrite prepares it again
    assert set(_shard_inodes(cfg)) == set(before) and _shard_inodes(cfg) != before


def test_a_study_another_run_of_it_is_writing_is_refused_before_any_stage(tmp_path, capfd, hold_output):
    """Two runs of one study: the second forgot the first one's done-markers and ran its stages into the same
    folders (stream-eval, zeroshot, the report)."""
    root = tmp_path / "runs" / "tiny"
    with hold_output(root):
        code, out = run_study(tmp_path, capfd, STUDY)
    assert code == 2 and (f"study folder {str(root)!r} is being written by another sinktrain process (pid 4242 on "
                          f"elsewhere); wait for it to end, or choose another study folder") in out, out
    assert not root.exists()


def test_a_time_stopped_study_says_to_run_the_study_again(tmp_path, capfd):
    """trainer.max_time in a study: the stop line names the command that continues it (the study takes no
    --resume), and running the study again does continue."""
    study = json.loads(json.dumps(STUDY))
    study["base"]["trainer"]["max_time"] = 1e-6  # spent within the first step, whatever the machine's speed
    code, out = run_study(tmp_path, capfd, study)
    saved = tmp_path / "runs" / "tiny" / "train" / "vanilla" / "checkpoints" / "step-00000001"
    assert code == 0 and (f"train: trainer.max_time (1e-06 s) spent, stopped after step 1 of 2; saved {saved}; "
                          f"continue with the same `sinktrain experiment` command") in out, out
    code, out = run_study(tmp_path, capfd, study)
    assert code == 0 and "max_time" not in out  # step 2 is the last: the planned end
    assert (saved.parent / "step-00000002").is_dir()


def test_sigterm_in_a_study_stops_training_at_a_checkpoint_and_any_other_stage_cleanly(tmp_path, capfd,
                                                                                      monkeypatch):
    """During training the trainer's own handler stops at a step with its checkpoint; in any other stage (here
    the export) the study stops as every verb does: `terminated`, exit 143, no lock or half-written folder left
    (it used to die on the spot, leaving both). Running the study again finishes it."""
    import os
    import signal

    import sinktrain.experiment.run as study_run
    from sinktrain.train.module import SinkLM

    real_step, real_export = SinkLM.training_step, study_run.export_checkpoint

    def sigterm_at_step_1(self, batch, batch_idx):
        if self.trainer.global_step == 1:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_step(self, batch, batch_idx)

    monkeypatch.setattr(SinkLM, "training_step", sigterm_at_step_1)
    code, out = run_study(tmp_path, capfd, STUDY)
    saved = tmp_path / "runs" / "tiny" / "train" / "vanilla" / "checkpoints" / "step-00000002"
    assert code == 143 and out.strip().splitlines()[-1] == (
        f"sinktrain experiment: error: stopped by SIGTERM after step 2; saved {saved}; continue with the same "
        f"`sinktrain experiment` command"), out
    monkeypatch.setattr(SinkLM, "training_step", real_step)

    def sigterm_in_export(cfg):
        os.kill(os.getpid(), signal.SIGTERM)
        return real_export(cfg)

    monkeypatch.setattr(study_run, "export_checkpoint", sigterm_in_export)
    code, out = run_study(tmp_path, capfd, {**STUDY, "base": {**STUDY["base"], "trainer": {
        **STUDY["base"]["trainer"], "max_steps": 3}}})
    assert code == 143 and out.strip().splitlines()[-1] == "sinktrain experiment: terminated", out
    left = [p.name for p in (tmp_path / "runs").rglob("*") if p.name != "run.lock"]  # a run dir keeps its run.lock
    assert not [n for n in left if n.endswith(".lock") or ".tmp-" in n], left
    monkeypatch.setattr(study_run, "export_checkpoint", real_export)
    code, out = run_study(tmp_path, capfd, {**STUDY, "base": {**STUDY["base"], "trainer": {
        **STUDY["base"]["trainer"], "max_steps": 3}}})
    assert code == 0 and (tmp_path / "runs" / "tiny" / "report.md").is_file(), out


@pytest.mark.parametrize("error", [json.JSONDecodeError("Expecting value", "garbage", 0),
                                   UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
                                   FileNotFoundError("--data-dir 'x' does not exist")])
def test_a_section_error_is_renamed_whatever_its_constructor_takes(error):
    """in_section re-raises a stage's error with the section's name; JSONDecodeError and UnicodeDecodeError take
    more than a message, and rebuilding them raised a TypeError inside the traceback."""
    from sinktrain.experiment.config import in_section

    with pytest.raises((ValueError, OSError)) as caught:
        with in_section("zeroshot"):
            raise error
    assert str(caught.value).startswith("experiment zeroshot: ") and caught.value.__suppress_context__
    assert "zeroshot.data_dir" in str(caught.value) or isinstance(error, ValueError)


def test_a_relative_recipe_that_is_not_there_names_the_folder_it_was_read_from(tmp_path, capfd, monkeypatch):
    """Run from another folder, a study's `recipe: recipes/tiny-cpu.yaml` is not found: the line says where it
    looked (the study file's own folder is not where relative paths start)."""
    monkeypatch.chdir(tmp_path)
    code, out = run_study(tmp_path, capfd, {**STUDY, "recipe": "recipes/tiny-cpu.yaml"})
    err = [line for line in out.splitlines() if "error" in line]
    assert code == 2 and err == [
        f"sinktrain experiment: error: experiment recipe 'recipes/tiny-cpu.yaml' does not exist in {tmp_path} (a "
        f"study's relative paths are read from the folder it runs in); point `recipe:` at a training recipe YAML"], out
