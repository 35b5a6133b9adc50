"""A finished study run again: what each stage wrote is checked before it is reused (a damaged output makes the
stage run again), and the inputs each stage reads are checked before the first training.

Every test here starts from a copy of one finished study (relative paths, so the copy's done-markers hold)."""

import json
import re
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


def test_a_results_file_of_the_wrong_shape_is_named():
    """A stage's results.json whose files are as written can still be one an older sinktrain wrote: the report
    reads every model's entries, so each must have the shape it reads."""
    from sinktrain.experiment.run import results_problem

    def ppl(entry):
        return isinstance(entry.get("ppl"), (int, float))

    stream = "configuration to {ppl: number, ...}"
    assert results_problem([], ["a"], stream, ppl) == "it holds list, not a mapping of model to results"
    assert results_problem({"a": {}}, ["a", "b"], stream, ppl) == "it has no results for b"
    assert results_problem({"a": {"0+32": {"ppl": 3.5}}}, ["a"], stream, ppl) is None
    assert results_problem({"a": {"0+32": {"ppl": 3.5}}, "b": {"0+32": {"ppl": "x"}}}, ["a"], stream, ppl) == \
        "its results for 'b' are not a mapping of configuration to {ppl: number, ...}"
    assert results_problem({"a": {"arc_easy": 3}}, ["a"], "task to results") == \
        "its results for 'a' are not a mapping of task to results"
    assert results_problem({"a": {"arc_easy": {"acc": 0.5}}}, ["a"], "task to results") is None


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


def _other_tokenizer(folder: Path) -> str:
    """A tokenizer.json that is not the bundled GPT-NeoX one (a two-word vocabulary)."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    tok = Tokenizer(models.WordLevel({"<unk>": 0, "the": 1}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(folder / "other-tokenizer.json"))
    return str(folder / "other-tokenizer.json")


def _garbage_tokenizer(folder: Path) -> str:
    (folder / "garbage.json").write_text("garbage{{{")
    return str(folder / "garbage.json")


@pytest.mark.parametrize("edit, message", [
    (lambda s, tmp: s["stream"].update(tokens=20), "experiment stream: the text has 20 tokens in the data's "
     "tokenizer (the variants'), not more than the cache size 32; use a longer stream.text (or a larger "
     "stream.tokens) or a smaller cache"),
    (lambda s, tmp: s["stream"].update(tokenizer=_other_tokenizer(tmp)), "experiment stream: stream.tokenizer "
     "'{tmp}/other-tokenizer.json' disagrees with the tokenizer of the study's data, which every exported variant "
     "carries"),
    (lambda s, tmp: s["variants"]["vanilla"].update(data={"tokenizer": _other_tokenizer(tmp)}), "experiment variant "
     "'vanilla': data.tokenizer '{tmp}/other-tokenizer.json' is not the tokenizer the study's data is prepared with; "
     "drop data.tokenizer from the recipe, base or variants.vanilla"),
    (lambda s, tmp: s["variants"]["vanilla"].update(data={"tokenizer": _garbage_tokenizer(tmp)}), "experiment "
     "variant 'vanilla': data.tokenizer: tokenizer file '{tmp}/garbage.json' could not be loaded"),
    (lambda s, tmp: s["base"].update(model={"tokenizer_vocab_size": 50000}), "experiment variant 'vanilla': "
     "model.tokenizer_vocab_size is 50000 but the study's data tokenizer has 50277 ids; set "
     "model.tokenizer_vocab_size to 50277"),
    (lambda s, tmp: s["stream"].update(text="pg19:first", pg19_dataset="sinktrain-tests/no-such-pg19"),
     "experiment stream: cannot read the PG19 dataset 'sinktrain-tests/no-such-pg19' (split 'test': "),
], ids=["text-within-cache", "stream-tokenizer-not-the-datas", "variant-tokenizer-not-the-datas",
        "variant-tokenizer-garbage", "vocabulary-not-the-datas", "pg19-offline"])
def test_what_the_stream_stage_and_training_refused_late_is_refused_before_the_first_stage(tmp_path, capfd, edit,
                                                                                           message):
    """Each of these passed the study's checks and was refused only by the stage that met it: the stream stage
    after every variant trained, a variant's training after the variants before it trained. (The suite runs
    offline, so the PG19 hub dataset cannot be reached.)"""
    from test_experiment_hostile import run_study

    study = json.loads(json.dumps(STUDY))
    edit(study, tmp_path)
    code, out = run_study(tmp_path, capfd, study)
    assert code == 2 and len(errors(out)) == 1 and message.format(tmp=tmp_path) in errors(out)[0], out
    assert "Traceback" not in out and not (tmp_path / "runs").exists()


def test_each_variants_data_is_checked_before_the_first_variant_trains(tmp_path, capfd):
    """A sample longer than the validation split was refused only when that variant started training, after the
    variants before it had trained (hours, in a real study)."""
    from test_experiment_hostile import run_study

    study = json.loads(json.dumps(STUDY))
    study["data"]["val_fraction"] = 0.001
    study["variants"]["long"] = {"model": {"max_seq_len": 512}}
    code, out = run_study(tmp_path, capfd, study)
    root = tmp_path / "runs" / "tiny"
    val = json.loads((root / "data/manifest.json").read_text())["splits"]["val"]["tokens"]
    assert code == 2 and errors(out) == [
        f"sinktrain experiment: error: experiment variant 'long': {root / 'data'}: the val split has {val} tokens, "
        f"fewer than one sample of 512; prepare more data (or a larger data.val_fraction) or use a shorter "
        f"sequence"], out
    assert "Traceback" not in out and not (root / "train").exists()


def test_the_fp16_loss_scale_is_part_of_the_recipe_and_speed_levers_are_not():
    """trainer.initial_loss_scale_power decides which fp16 steps overflow and are skipped, so the weights: a
    finished fp16 variant was reused after it changed. In another precision it is never read."""
    from sinktrain.experiment.run import recipe_changes
    from sinktrain.train import load_train_config

    recipe = Path(STUDY["recipe"])
    for precision, expected in (("16-mixed", ["trainer.initial_loss_scale_power 12 -> 10"]),
                                ("auto", ["trainer.initial_loss_scale_power 12 -> 10"]), ("32-true", []),
                                ("bf16-mixed", [])):
        saved = load_train_config(recipe, [f"trainer.precision={precision}"]).to_dict()
        now = load_train_config(recipe, [f"trainer.precision={precision}", "trainer.initial_loss_scale_power=10",
                                         "trainer.deterministic=true", "optim.impl=torch",
                                         "trainer.zero_stage=2"]).to_dict()
        assert recipe_changes(saved, now) == expected, precision


@pytest.mark.parametrize("text, problem", [
    ("", "cannot be read (Expecting value: line 1 column 1 (char 0))"),
    ("[1, 2]", "is not a sinktrain run.json (it holds list, not a mapping)"),
], ids=["empty", "list"])
def test_a_damaged_training_run_json_is_refused_naming_it(study, capfd, text, problem):
    """It was the parser's message naming no file, or an AttributeError traceback for `[1, 2]`, from the training
    stage; it is refused before the first stage (the data stage says nothing)."""
    info = ROOT / "train/vanilla/run.json"
    info.write_text(text)
    before = {f: (ROOT / f).read_bytes() for f in ("report.json", "report.md", "experiment.yaml")}
    code, out = run(capfd)
    assert code == 2 and errors(out) == [
        f"sinktrain experiment: error: {info} {problem}; restore it from a copy, or move {info.parent} away and the "
        f"study trains the variant again"], out
    assert "Traceback" not in out and "prepare:" not in out and info.read_text() == text
    assert {f: (ROOT / f).read_bytes() for f in before} == before


@pytest.mark.parametrize("damage, reason", [
    ("no-tokenizer", "tokenizer.json is missing"),
    ("edited-tokenizer-config", "tokenizer_config.json changed since it was written"),
    ("older-marker", "its done-marker holds no record of the files it wrote (an older sinktrain's)"),
])
def test_an_export_missing_any_file_it_wrote_is_exported_again(study, capfd, damage, reason):
    """Only config.json and the weights were checked: an export without its tokenizer was skipped, and the
    stream stage then failed with "has no tokenizer files; pass stream.tokenizer"."""
    export = ROOT / "export/vanilla"
    before = _files(export)
    if damage == "no-tokenizer":
        (export / "tokenizer.json").unlink()
    elif damage == "edited-tokenizer-config":
        (export / "tokenizer_config.json").write_text("{}")
    else:
        marker = ROOT / "stages/export-vanilla.json"
        marker.write_text(json.dumps({k: v for k, v in json.loads(marker.read_text()).items() if k != "outputs"}))
    code, out = run(capfd)
    assert code == 0 and f"export vanilla: {reason}; exporting it again" in out, out
    assert _files(export) == before and "stream-eval: done" in out, out  # the same export again


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_data_prepared_again_into_the_same_shards_trains_nothing_again(study, capfd):
    """The whole manifest was compared, with the settings that only say how it was prepared (batch_size, workers,
    overwrite): byte-identical shards made the variant train again."""
    shards = {p.name: p.read_bytes() for p in (ROOT / "data").glob("*.bin")}
    checkpoints = sorted(p.name for p in (ROOT / "train/vanilla/checkpoints").iterdir())
    code, out = run(capfd, FINISHED, "data.overwrite=true", "data.batch_size=7")
    assert code == 0 and "train vanilla: done" in out and "stream-eval: done" in out, out
    assert {p.name: p.read_bytes() for p in (ROOT / "data").glob("*.bin")} == shards
    assert json.loads((ROOT / "data/manifest.json").read_text())["config"]["batch_size"] == 7  # prepared again
    assert sorted(p.name for p in (ROOT / "train").iterdir()) == ["vanilla"]  # none kept aside as vanilla.old-1
    assert sorted(p.name for p in (ROOT / "train/vanilla/checkpoints").iterdir()) == checkpoints


def test_a_data_out_dir_in_the_study_is_refused(tmp_path, capfd):
    """The study prepares its data in <root>/data: data.out_dir was dropped in silence."""
    from test_experiment_hostile import run_study

    study = json.loads(json.dumps(STUDY))
    study["data"]["out_dir"] = str(tmp_path / "mydata")
    code, out = run_study(tmp_path, capfd, study)
    assert code == 2 and errors(out) == [
        f"sinktrain experiment: error: experiment data: 'out_dir' is set by the experiment (the study prepares its "
        f"data in {tmp_path / 'runs' / 'tiny' / 'data'}); remove it, or give data prepared elsewhere as data: "
        f"{{dir: ...}}"], out
    assert not (tmp_path / "runs").exists() and not (tmp_path / "mydata").exists()


def test_a_later_stages_refusal_names_the_studys_keys_not_the_stages_flags(study, capfd, monkeypatch):
    """Only the checks before the first stage named the study's keys: a refusal from inside a stage named the
    flags of its CLI verb (--tokens, --out_dir, --run-dir), which `sinktrain experiment` does not take."""
    import sinktrain.experiment.run as study_run

    def refused(cfg):  # what stream-eval says of a text within the cache, past the study's own check of it
        raise ValueError("the text has 20 tokens (tokenizer of x), not more than the cache size 32; use a longer "
                         "text (or a larger --tokens) or a smaller cache")

    monkeypatch.setattr(study_run, "evaluate", refused)
    code, out = run(capfd, FINISHED, "stream.sinks=[0]")
    assert code == 2 and errors(out) == [
        "sinktrain experiment: error: experiment stream: the text has 20 tokens (tokenizer of x), not more than the "
        "cache size 32; use a longer text (or a larger stream.tokens) or a smaller cache"], out

    # Training on from a checkpoint that cannot be read: the fix is to move the run away, not a new --run-dir.
    (ROOT / "train/vanilla/checkpoints/step-00000002/lightning.ckpt").write_bytes(b"garbage")
    code, out = run(capfd, FINISHED, "base.trainer.max_steps=4")
    ckpt_file = ROOT / "train/vanilla/checkpoints/step-00000002/lightning.ckpt"
    assert code == 2 and len(errors(out)) == 1 and re.fullmatch(
        re.escape(f"sinktrain experiment: error: experiment variant 'vanilla': none of the 1 checkpoints in "
                  f"'{ROOT / 'train/vanilla'}' can be read (the newest, step-00000002: checkpoint file '{ckpt_file}' "
                  f"cannot be read (") + r".+" + re.escape(
            f"); it is truncated or damaged); resume from a copy of an intact one or move {ROOT / 'train/vanilla'} "
            f"away (the study then trains the variant again)"), errors(out)[0]), out

    # The study's data folder is no key of the study (data.out_dir is refused).
    shutil.rmtree(ROOT / "data")
    (ROOT / "data").write_text("mine")
    code, out = run(capfd)
    assert code == 2 and errors(out) == [
        f"sinktrain experiment: error: experiment data: output '{ROOT / 'data'}' is a file; move it away"], out
    assert (ROOT / "data").read_text() == "mine"
