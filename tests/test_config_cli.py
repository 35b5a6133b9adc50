"""The one typed config pattern: types and ranges checked against the annotations (from the command line, YAML
and Python), help from field docstrings, one-line user errors before anything is written, tracebacks kept for
internal errors."""

from __future__ import annotations

import dataclasses
import os
import typing
from pathlib import Path

import pytest
import yaml

from sinktrain.cli import main
from sinktrain.cli_config import config_parser, parse_config
from sinktrain.config_io import ConfigKeyError, NonNegativeInt, PositiveInt, Probability, configclass
from sinktrain.data import PrepareConfig
from sinktrain.experiment.config import ExperimentConfig
from sinktrain.export import ExportConfig
from sinktrain.train import TrainConfig, load_train_config
from sinktrain.train.config import CheckpointConfig, TrainerConfig

REPO = Path(__file__).resolve().parents[1]
RECIPE = str(REPO / "recipes/tiny-cpu.yaml")


def test_overrides_are_typed_by_the_annotations():
    cfg = load_train_config(RECIPE, ["optim.lr=1e-3", "optim.min_lr=0", "trainer.max_steps=2", "trainer.devices=2"])
    assert cfg.optim.lr == 0.001 and type(cfg.optim.lr) is float  # YAML 1.1 would make '1e-3' a string
    assert cfg.optim.min_lr == 0 and type(cfg.optim.min_lr) is float  # an int is accepted for a float
    assert (cfg.trainer.max_steps, cfg.trainer.devices) == (2, 2)
    # the flag spelling and --set are the same override; later wins
    cfg = parse_config(TrainConfig, ["--config", RECIPE, "--optim.lr", "2e-3", "--set", "optim.lr=3e-3"], prog="t")
    assert cfg.optim.lr == 0.003


@pytest.mark.parametrize("override, message", [
    ("trainer.max_steps=ten", "trainer.max_steps: expected int, got 'ten'"),
    ("trainer.val_every=ten", "trainer.val_every: expected int, got 'ten'"),
    ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
    ("trainer.val_every=-1", "trainer.val_every must be >= 0, got -1"),
    ("checkpoint.every=-1", "checkpoint.every must be >= 0, got -1"),
    ("trainer.global_batch_size=0", "trainer.global_batch_size must be >= 1, got 0"),
    ("seed=-1", "seed must be >= 0 and <= 4294967295, got -1"),
    ("trainer.zero_stage=3", "trainer.zero_stage must be >= 1 and <= 2, got 3"),
    ("checkpoint.keep_last=-1", "checkpoint.keep_last must be >= 0, got -1"),
    ("optim.lr=-1e-3", "optim.lr must be > 0, got -0.001"),
    ("optim.betas=[0.9, 1.5]", "optim.betas[1] must be >= 0 and <= 1, got 1.5"),
    ("schedule.warmup_fraction=1", "schedule.warmup_fraction must be >= 0 and < 1, got 1.0"),
    ("model.max_seq_len=0", "model.max_seq_len must be >= 1, got 0"),
    ("trainer.bogus=1", "unknown key 'trainer.bogus'; accepted keys in trainer: strategy,"),
    ("model.sink.kindx=token", "unknown key 'model.sink.kindx'; accepted keys in model.sink: kind, num_tokens,"),
    ("trainr.max_steps=3", "unknown key 'trainr'; accepted keys: model, data, optim,"),  # a misspelt section
])
def test_bad_override_is_one_line_and_writes_nothing(tmp_path, capsys, override, message):
    run = tmp_path / "run"
    code = main(["train", "--config", RECIPE, "--run_dir", str(run), "--set", f"data.dir={tmp_path}",
                 "--set", override])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("sinktrain train: error: "), err
    assert message in err, err
    assert not run.exists()


def test_ranges_hold_for_yaml_experiment_files_and_python(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"trainer": {"val_every": -5}}))
    with pytest.raises(ConfigKeyError, match="trainer.val_every must be >= 0, got -5"):
        load_train_config(bad)
    with pytest.raises(ConfigKeyError, match="checkpoint.keep_last must be >= 0, got -1"):
        CheckpointConfig(keep_last=-1)
    with pytest.raises(ConfigKeyError, match="trainer.max_steps must be an integer >= 1, got 'ten'"):
        TrainerConfig(max_steps="ten")
    with pytest.raises(ConfigKeyError, match="trainer.max_steps must be an integer >= 1, got True"):
        TrainerConfig(max_steps=True)
    study = yaml.safe_load((REPO / "recipes/experiments/demo-cpu.yaml").read_text())
    study["recipe"] = str(REPO / study["recipe"])
    study["base"]["trainer"]["val_every"] = -1
    with pytest.raises(ConfigKeyError, match="trainer.val_every must be >= 0, got -1"):
        from sinktrain.config_io import build_dataclass

        build_dataclass(ExperimentConfig, study).validate()


def test_a_field_added_later_is_range_checked_without_extra_code():
    @configclass("new")
    class NewSection:
        count: PositiveInt = 1
        """How many."""
        rate: Probability = 0.5
        """How often."""
        limit: NonNegativeInt | None = None
        """At most."""

    assert NewSection(limit=None).count == 1
    for kwargs, message in [({"count": 0}, "new.count must be >= 1, got 0"), ({"rate": 2}, "new.rate must be"),
                            ({"limit": -1}, "new.limit must be >= 0")]:
        with pytest.raises(ConfigKeyError, match=message):
            NewSection(**kwargs)
    with pytest.raises(ConfigKeyError, match="count: expected int, got 'x'"):
        parse_config(NewSection, ["--count", "x"], prog="t")


@pytest.mark.parametrize("cls", [TrainConfig, PrepareConfig, ExportConfig, ExperimentConfig])
def test_every_key_has_help_from_its_docstring(cls):
    parser = config_parser(cls, "sinktrain x", "")
    keyed = [a for a in parser._actions if a.option_strings and a.dest not in ("help", "config", "print_config", "set")
             and not a.option_strings[0].endswith("+")]

    def leaves(c, prefix=""):
        for name, tp in typing.get_type_hints(c).items():
            if dataclasses.is_dataclass(tp):
                yield from leaves(tp, f"{prefix}{name}.")
            else:
                yield prefix + name

    names = set(leaves(cls))
    documented = {a.dest for a in keyed if a.help and not a.help.startswith("Path to a configuration file")}
    assert names <= documented, sorted(names - documented)


def test_help_comes_from_field_docstrings(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert "--trainer.val_every" in out and "Optimizer steps between validations; 0 disables." in out
    assert "--optim.lr" in out and "Peak learning rate" in out


def test_internal_errors_keep_their_traceback_and_debug_shows_user_errors(monkeypatch, tmp_path, capsys):
    import sinktrain.train

    def explode(cfg):
        raise RuntimeError("CUDA error: an illegal memory access (deep inside fit)")

    monkeypatch.setattr(sinktrain.train, "train", explode)
    with pytest.raises(RuntimeError, match="illegal memory access"):
        main(["train", "--config", RECIPE, "--set", f"data.dir={tmp_path}"])
    with pytest.raises(ConfigKeyError, match="trainer.max_steps"):
        main(["train", "--debug", "--config", RECIPE, "--set", "trainer.max_steps=0"])


def test_positionals_and_bare_bool_flags():
    cfg = parse_config(ExportConfig, ["run", "out", "--overwrite", "--every", "2"], prog="t",
                       positionals=("source", "out_dir"))
    assert (cfg.source, cfg.out_dir, cfg.overwrite, cfg.every, cfg.dry_run) == ("run", "out", True, 2, False)
    with pytest.raises(ConfigKeyError, match="unexpected argument 'extra'"):
        parse_config(ExportConfig, ["run", "out", "extra"], prog="t", positionals=("source", "out_dir"))


def test_a_training_recipe_given_to_experiment_names_the_keys_a_study_file_takes(capsys):
    code = main(["experiment", RECIPE])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "unknown key 'model'; accepted keys: name, recipe, base, variants, data," in err, err


@configclass("inner")
class TextInner:
    note: str | None = None
    """A text."""


@configclass("outer")
class TextOuter:
    system: str | None = None
    """A text."""
    inner: TextInner = dataclasses.field(default_factory=TextInner)
    """Nested."""


def test_optional_text_fields_take_their_value_as_written(tmp_path, capsys):
    """YAML would read "# Rules" as a comment and "" as nothing: both silently became None (no system prompt)."""

    def parsed(*argv):
        cfg = parse_config(TextOuter, list(argv), prog="t")
        return cfg.system, cfg.inner.note

    assert parsed("--system", "# Rules: be brief") == ("# Rules: be brief", None)
    assert parsed("--system=# a", "--set", "inner.note=#b") == ("# a", "#b")
    assert parsed("--system", "") == ("", None)
    assert parsed("--system", "x", "--system", "null", "--set", "inner.note=~") == (None, None)  # YAML's None
    assert parsed("--system", "12", "--inner.note", "true") == ("12", "true")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("system: from the file\n")
    assert parsed("--system", "# flag", "--config", str(recipe)) == ("from the file", None)  # later file wins
    assert parsed("--config", str(recipe), "--system", "# flag") == ("# flag", None)
    with pytest.raises(SystemExit) as exit_:
        parsed("--system", "# shown", "--print_config")
    assert exit_.value.code == 0
    assert yaml.safe_load(capsys.readouterr().out) == {"system": "# shown", "inner": {"note": None}}


@pytest.mark.parametrize("override, message", [
    ("model.sink=x", "model.sink is a section of keys, not a value (got 'x'); set its keys as model.sink.KEY=VALUE "
     "(kind, num_tokens, token_ids)"),
    ("trainer.max_steps=", "trainer.max_steps: expected int, got ''"),
    ("trainer.max_steps=1e3", "trainer.max_steps: expected int, got 1000.0 (YAML reads 1e3 as a float); write the "
     "integer, 1000"),
])
def test_jsonargparse_wording_is_made_plain(capsys, override, message):
    """They read "model.sink: Unable to load config 'x' - model.sink: Unable to load config "x"" (jsonargparse takes
    a section's value for a config file's path) and "Expected a int. Got value:"."""
    assert main(["train", "--config", str(REPO / "recipes/tiny-cpu.yaml"), "--set", override]) == 2
    assert capsys.readouterr().err.strip() == f"sinktrain train: error: {message}"


def test_print_config_prints_only_a_config_that_holds(capsys):
    """--print_config printed `lr: -1.0` and exited 0, where the same run without it is refused."""
    recipe = str(REPO / "recipes/tiny-cpu.yaml")
    assert main(["train", "--config", recipe, "--set", "optim.lr=-1", "--print_config"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.strip() == "sinktrain train: error: optim.lr must be > 0, got -1.0"
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--config", recipe, "--print_config"])
    assert exit_.value.code == 0 and yaml.safe_load(capsys.readouterr().out)["name"] == "tiny-cpu"


def test_null_is_refused_where_the_type_does_not_admit_it(tmp_path):
    """jsonargparse lets `key: null` through for any type: a str field then held None (`text_field: null` looked
    for a field named None), a path field the text "None"."""

    @configclass("new")
    class Named:
        name: str = "x"
        """A name."""
        count: PositiveInt = 1
        """How many."""
        note: str | None = None
        """Optional."""

    assert Named(note=None).note is None
    for kwargs, message in [({"name": None}, "new.name: expected str, got null"),
                            ({"count": None}, "new.count: expected int, got null")]:
        with pytest.raises(ConfigKeyError, match=message):
            Named(**kwargs)
    recipe = tmp_path / "r.yaml"
    recipe.write_text("count: 2\nname:\n")  # a blank value is YAML's null
    with pytest.raises(ConfigKeyError, match="name: expected str, got null"):
        parse_config(Named, ["--config", str(recipe)], prog="t")


def test_a_union_type_is_named_whole_in_the_message(capsys):
    from sinktrain.config_io import build_dataclass

    with pytest.raises(ConfigKeyError) as err:
        build_dataclass(PrepareConfig, {"sources": 5, "out_dir": "x"})
    assert str(err.value) == "config: sources: expected list[str] or str or null, got '5'"


def test_a_set_key_in_a_config_file_is_refused_not_dropped(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"trainer": {"max_steps": 2}, "set": "seed=7"}))
    code = main(["train", "--config", RECIPE, "--config", str(recipe), "--set", f"data.dir={tmp_path}"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "r.yaml: 'set' is a command-line option, not a key; write each override as its own key" in err, err


@pytest.mark.parametrize("verb", [["train"], ["data", "prepare"], ["generate", "m", "--prompt", "x"]])
def test_an_empty_config_file_or_a_folder_is_named_in_one_line(tmp_path, capsys, verb):
    """jsonargparse said "Unexpected config: # nothing" for an empty file, and a folder "did not exist"."""
    empty = tmp_path / "empty.yaml"
    for text in ("", "# nothing here yet\n"):
        empty.write_text(text)
        assert main([*verb, "--config", str(empty)]) == 2
        assert capsys.readouterr().err == (f"sinktrain {' '.join(verb[:2 if verb[0] == 'data' else 1])}: error: "
                                           f"config file {str(empty)!r} holds no keys; write the config's keys in "
                                           f"it (`--help` lists them)\n")
    empty.write_text("{}\n")  # an explicit empty mapping is a config (an overrides file with none this time)
    assert "holds no keys" not in (main([*verb, "--config", str(empty)]), capsys.readouterr().err)[1]
    assert main([*verb, f"--config={tmp_path}"]) == 2
    assert capsys.readouterr().err.endswith(f"error: config file {str(tmp_path)!r} is a folder; pass the path of a "
                                            f"YAML config file\n")


def test_a_dotted_override_into_a_study_mapping_sets_one_key_and_keeps_the_rest(capsys):
    """`base`, `variants`, `stream`... are mappings (their keys are checked by the stages they feed): a dotted
    override sets the one key, with its YAML type, and keeps its siblings (it used to replace `base.trainer` whole)."""
    study = str(REPO / "recipes/experiments/demo-cpu.yaml")
    cfg = parse_config(ExperimentConfig, [study, "--set", "base.trainer.max_time=6", "--stream.tokens", "1024",
                                          "--set", "variants.sink1.model.sink.num_tokens=2"],
                       prog="t", positionals=("config",))
    written = yaml.safe_load(Path(study).read_text())
    assert cfg.base["trainer"] == {**written["base"]["trainer"], "max_time": 6}
    assert cfg.stream == {**written["stream"], "tokens": 1024}
    assert cfg.variants["sink1"] == {"model": {"sink": {"kind": "token", "num_tokens": 2}}}
    assert cfg.variants["vanilla"] == written["variants"]["vanilla"]
    assert cfg.train_config("sink1").trainer.max_steps == 150  # the study's, not the recipe's 20
    assert main(["experiment", study, "--set", "base.model.preset.size=2"]) == 2
    assert capsys.readouterr().err.strip() == ("sinktrain experiment: error: base.model.preset is 'tiny', not a "
                                               "mapping, so base.model.preset.size cannot be set")
    # a mistyped variant would be a new one, trained beside the others: refused, naming those there are
    assert main(["experiment", study, "--set", "variants.snk1.model.sink.num_tokens=2"]) == 2
    assert capsys.readouterr().err.strip() == (
        "sinktrain experiment: error: variants.snk1.model.sink.num_tokens: there is no 'snk1' under `variants` (it "
        "has: vanilla, sink1, zerosink); a new entry is given whole: --set 'variants.snk1={model: ...}'")
    cfg = parse_config(ExperimentConfig, [study, "--set", "variants.big={model: {preset: {size: small}}}"],
                       prog="t", positionals=("config",))
    assert cfg.variants["big"] == {"model": {"preset": {"size": "small"}}}


@pytest.mark.parametrize("override, message", [
    ("optim.lr=.inf", "optim.lr must be a finite number > 0, got inf"),
    ("optim.min_lr=1e400", "optim.min_lr must be a finite number >= 0, got inf"),  # YAML reads 1e400 as inf
    ("optim.betas=[0.9, -.inf]", "optim.betas[1] must be a finite number >= 0 and <= 1, got -inf"),
    ("trainer.max_time=.inf", "trainer.max_time must be a finite number > 0, got inf"),
])
def test_an_infinite_number_is_refused_where_a_range_is_declared(tmp_path, capsys, override, message):
    """Only NaN was refused: .inf passed `>= 0` and `> 0` checks, and a run went on with an infinite setting."""
    run = tmp_path / "run"
    assert main(["train", "--config", RECIPE, "--run_dir", str(run), "--set", override]) == 2
    assert capsys.readouterr().err == f"sinktrain train: error: {message}\n"
    assert not run.exists()
    recipe = tmp_path / "r.yaml"
    recipe.write_text("optim:\n  lr: .inf\n")
    with pytest.raises(ConfigKeyError, match=r"^optim.lr must be a finite number > 0, got inf$"):
        load_train_config(recipe)


def test_a_key_given_twice_in_a_config_file_is_refused_naming_the_lines(tmp_path, capsys):
    """PyYAML keeps the last of two equal keys: `seed: 1` then `seed: 2` trained with seed 2, unsaid."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text("seed: 1\ntrainer:\n  max_steps: 3\n  max_steps: 4\n")
    run = tmp_path / "run"
    assert main(["train", "--config", RECIPE, "--config", str(recipe), "--run_dir", str(run)]) == 2
    assert capsys.readouterr().err == (f"sinktrain train: error: {recipe} gives key 'max_steps' twice (lines 3 and "
                                       f"4); keep one\n")
    assert not run.exists()
    # a study file, and the recipe a study names (read when its variants are built)
    study = tmp_path / "study.yaml"
    study.write_text(f"name: s\nrecipe: {RECIPE}\nvariants: {{a: {{}}}}\nname: t\n")
    assert main(["experiment", str(study)]) == 2
    assert capsys.readouterr().err == (f"sinktrain experiment: error: {study} gives key 'name' twice (lines 1 and 4); "
                                       f"keep one\n")
    recipe.write_text("seed: 1\nseed: 2\n")
    study.write_text(f"name: s\nrecipe: {recipe}\nvariants: {{a: {{}}}}\n")
    with pytest.raises(ConfigKeyError, match=rf"^{recipe} gives key 'seed' twice \(lines 1 and 2\); keep one$"):
        parse_config(ExperimentConfig, [str(study)], prog="t", positionals=("config",)).train_config("a")


@pytest.mark.parametrize("verb", [["train"], ["generate", "m", "--prompt", "x"]])
def test_yaml_aliases_in_a_config_file_are_refused_before_they_expand(tmp_path, capsys, verb):
    """Each level of `[*a, *a, ...]` multiplies the value: seven levels made a 34 MB error line (jsonargparse
    printed the expanded value), a few more used up the memory."""
    bomb = tmp_path / "bomb.yaml"
    levels = [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 5)]
    bomb.write_text("\n".join(["l0: &l0 [lol, lol, lol]", *levels, "prompt: *l4", ""]))
    assert main([*verb, "--config", str(bomb)]) == 2
    assert capsys.readouterr().err == (f"sinktrain {verb[0]}: error: {bomb} uses YAML aliases (*l0 at line 2); write "
                                       f"the values out\n")
    bomb.write_text("seed: &s 3\n")  # an anchor alone repeats nothing
    assert parse_config(TrainConfig, ["--config", str(bomb)], prog="t").seed == 3


def test_a_config_file_nested_too_deeply_is_one_line(tmp_path, capsys):
    """`prompt: [[[[...` 100,000 deep ended in a RecursionError traceback from PyYAML."""
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    assert main(["train", "--config", str(deep)]) == 2
    assert capsys.readouterr().err == (f"sinktrain train: error: {deep} is nested too deeply to read; a config holds "
                                       f"a few levels of keys, write it flatter\n")


@pytest.mark.parametrize("kind, phrase", [("device", "is not a regular file (a character device)"),
                                          ("fifo", "is not a regular file (a FIFO)"), ("loop", "is a symlink loop"),
                                          ("empty", "is an empty path")])
def test_a_config_path_that_is_no_regular_file_is_named_for_what_it_is(tmp_path, capsys, kind, phrase):
    """`--config /dev/null` and a symlink loop were said not to exist (Path.is_file() is False for both)."""
    path = {"device": "/dev/null", "empty": ""}.get(kind, str(tmp_path / kind))
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "loop":
        os.symlink(path, path)
    assert main(["train", "--config", path]) == 2
    assert capsys.readouterr().err == (f"sinktrain train: error: config file {path!r} {phrase}; pass the path of a "
                                       f"YAML config file\n")


@pytest.mark.parametrize("text, message", [
    ("1: 2", "key 1 at line 1 is read as a number, not a name; config keys are names (quote it, '1', where it is "
     "meant as one)"),
    ("trainer:\n  yes: 2", "key yes at line 2 is read as true/false, not a name; config keys are names (quote it, "
     "'yes', where it is meant as one)"),
    ("[a, b]: 1", "the key at line 1 is read as list, not a name; config keys are names"),
])
def test_a_key_that_yaml_reads_as_no_name_is_refused_naming_the_file(tmp_path, capsys, text, message):
    """jsonargparse said "Key must be a string, got: 1.", naming neither the file nor the fix."""
    recipe = tmp_path / "r.yaml"
    recipe.write_text(text + "\n")
    assert main(["train", "--config", str(recipe)]) == 2
    assert capsys.readouterr().err == f"sinktrain train: error: {recipe}: {message}\n"


@pytest.mark.parametrize("item", ["=3", ".=3", "optim.=3"])
def test_a_set_override_without_a_key_is_one_line_naming_the_form(capsys, item):
    """`--set =3` printed jsonargparse's "unrecognized arguments: --=3", and `--set .=3` "unknown key ''"."""
    assert main(["train", "--config", RECIPE, "--set", item]) == 2
    assert capsys.readouterr().err == (f"sinktrain train: error: --set needs KEY=VALUE with a key, e.g. --set "
                                       f"optim.lr=1e-3 (got {item!r})\n")


@pytest.mark.parametrize("text, message", [
    ("trainer: 5", "trainer is 5, not a mapping of its keys; give it as trainer: {key: value, ...} or set trainer.KEY"),
    ("trainer:", "trainer is null, not a mapping of its keys; give it as trainer: {key: value, ...} or set "
     "trainer.KEY"),
    ("model: {sink: [1]}", "model.sink is [1], not a mapping of its keys; give it as model.sink: {key: value, ...} "
     "or set model.sink.KEY"),
])
def test_a_section_given_a_value_in_a_config_file_is_one_line(tmp_path, capsys, text, message):
    """`trainer: 5` (or a list, or null) in a --config file ended in a TypeError traceback from jsonargparse."""
    recipe = tmp_path / "r.yaml"
    assert train_refuses(recipe, text, capsys) == f"sinktrain train: error: {recipe}: {message}\n"


def train_refuses(recipe, text: str, capsys) -> str:
    """`sinktrain train --config recipe` with `text` as the recipe: exit 2; its stderr."""
    recipe.write_text(text + "\n")
    assert main(["train", "--config", str(recipe)]) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("key, message", [
    ("seed", "seed: expected int, got \"['lol', 'lol', 'lol', 'lol', 'lol', '...l', 'lol', 'lol', 'lol', 'lol', "
     "'lol']\""),
    ("trainer", "{recipe}: trainer is ['lol', 'lol', 'lol', 'lol', 'lol', 'lol', ...], not a mapping of its keys; give "
     "it as trainer: {{key: value, ...}} or set trainer.KEY"),
])
def test_a_long_value_is_shortened_in_the_error_line(tmp_path, capsys, key, message):
    """The line quoted the whole value: a 100,000-item list in a config file made a 700 kB error line."""
    recipe = tmp_path / "r.yaml"
    err = train_refuses(recipe, f"{key}: [{', '.join(['lol'] * 100_000)}]", capsys)
    assert err == f"sinktrain train: error: {message.format(recipe=recipe)}\n"
