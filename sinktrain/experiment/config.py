"""ExperimentConfig: variants sharing one base training recipe, the data to prepare, the streaming evaluation.

A study file looks like (see recipes/experiments/):

    name: demo-cpu
    recipe: recipes/tiny-cpu.yaml          # base training recipe, shared by every variant
    base: {trainer: {max_steps: 300}}      # overrides applied to every variant
    variants:                              # name -> overrides of the base (nested mapping)
      vanilla: {model: {sink: {kind: none}}}
      sink1:   {model: {sink: {kind: token, num_tokens: 1}}}
    data:                                  # PrepareConfig fields (out_dir is <root>/data) ...
      sources: [data/books/austen_emma.txt]
    # ... or an existing data directory:   data: {dir: /datasets/pile-neox}
    stream: {text: data/books/austen_persuasion.txt, cache: 64, sinks: [0, 1, 2, 4]}   # StreamEvalConfig fields
    pretrained: [smollm2-135m-instruct]    # optional: pretrained models streamed beside the variants (any
                                           # model source stream-eval takes: folder, .gguf, hub id, zoo name)
    zeroshot: {tasks: [piqa, arc_easy], limit: 50, data_dir: data/zeroshot}   # optional: ZeroShotConfig
                                           # fields; the variants' Table 4 block beside Table 3 in the report

Every section is checked up front (unknown keys are errors) so a typo fails before hours of training.
"""

from __future__ import annotations

import copy
import re
from contextlib import contextmanager
from dataclasses import field
from pathlib import Path

from sinktrain.config_io import ConfigKeyError, build_dataclass, configclass, load_yaml
from sinktrain.data import PrepareConfig
from sinktrain.stream import StreamEvalConfig
from sinktrain.train import TrainConfig
from sinktrain.zeroshot import ZeroShotConfig

# Keys of the `stream:` and `zeroshot:` blocks the experiment sets itself: the models it exported, and a folder
# of its own that it replaces (--overwrite) whenever the stage's done marker says the inputs changed.
EXPERIMENT_SET = ("models", "out", "overwrite")
# The training keys each variant's config gets from the study (train_config), never from base or variants
TRAIN_SET = ("run_dir", "resume", "name", "data.dir")


def _has_key(mapping, dotted: str) -> bool:
    for key in dotted.split("."):
        if not isinstance(mapping, dict) or key not in mapping:
            return False
        mapping = mapping[key]
    return True


@configclass()
class ExperimentConfig:
    """A study: variants of one training recipe, the data they share, the streaming evaluation, the report.
    Every section is checked up front (types, ranges, unknown keys) so a typo fails before hours of training."""

    name: str = ""
    """Names the folder <runs_dir>/<name>."""
    recipe: str = ""
    """Base training recipe (YAML), shared by every variant."""
    base: dict = field(default_factory=dict)
    """Overrides of the recipe applied to every variant (nested mapping)."""
    variants: dict = field(default_factory=dict)
    """Variant name -> overrides of the base (nested mapping)."""
    # A dotted override may not invent a variant: `--set variants.snk.trainer.lr=...` for `sink` would train a
    # fourth model (cli_config.parse_config). A new one is given whole: --set 'variants.big={...}'.
    NAMED_MAPPINGS = ("variants",)  # not annotated: not a field
    data: dict = field(default_factory=dict)
    """PrepareConfig keys but out_dir (the study's is <root>/data), or {dir: an existing data directory}."""
    stream: dict = field(default_factory=dict)
    """StreamEvalConfig keys (models and out are set by the study)."""
    runs_dir: str = "runs"
    """Parent folder of <name>/."""
    pretrained: list[str] = field(default_factory=list)
    """Pretrained models streamed beside the variants at the same caches (anything stream-eval takes: a folder,
    a .gguf file, a hub id, or a zoo name such as smollm2-135m-instruct, fetched once)."""
    zeroshot: dict = field(default_factory=dict)
    """ZeroShotConfig keys (tasks, limit, data_dir, ...) for a Table 4 block in the report; empty: none."""

    @property
    def root(self) -> Path:
        return Path(self.runs_dir) / self.name

    @property
    def data_dir(self) -> Path:
        return Path(self.data["dir"]) if "dir" in self.data else self.root / "data"

    def prepare_config(self) -> PrepareConfig | None:
        if "dir" in self.data:
            if len(self.data) > 1:
                raise ConfigKeyError(
                    "experiment data: give either dir (an existing data directory) or prepare keys, not both")
            return None
        return build_dataclass(PrepareConfig, {**self.data, "out_dir": str(self.data_dir)}, where="experiment data")

    def train_config(self, variant: str) -> TrainConfig:
        data = load_yaml(self.recipe)
        data = deep_merge(deep_merge(data, self.base), self.variants[variant])
        data.setdefault("data", {})["dir"] = str(self.data_dir)
        data["run_dir"] = str(self.root / "train" / variant)
        data["resume"] = "auto"
        data["name"] = f"{self.name}/{variant}"
        return TrainConfig.from_dict(data)

    def stream_config(self, model_dirs: list[str]) -> StreamEvalConfig:
        data = {**self.stream, "models": model_dirs, "out": str(self.root / "stream"), "overwrite": True}
        return build_dataclass(StreamEvalConfig, data, where="experiment stream")

    def zeroshot_config(self, model_dirs: list[str]) -> ZeroShotConfig | None:
        if not self.zeroshot:
            return None
        data = {**self.zeroshot, "models": model_dirs, "out": str(self.root / "zeroshot"), "overwrite": True}
        return build_dataclass(ZeroShotConfig, data, where="experiment zeroshot")

    def validate(self) -> None:
        if not self.name:
            raise ConfigKeyError("experiment needs a name (it names the folder runs/<name>)")
        check_name("study name", self.name)  # `../x` would put the study outside runs_dir
        if not self.variants:
            raise ConfigKeyError("experiment needs at least one variant under `variants:`")
        for v, overrides in self.variants.items():
            check_name("variant name", v)
            if overrides is not None and not isinstance(overrides, dict):  # null: the base as it is
                raise ConfigKeyError(f"experiment variants.{v}: {overrides!r} is not a mapping; give overrides of "
                                     f"the base, e.g. {v}: {{model: {{sink: {{kind: token, num_tokens: 1}}}}}}")
        if not Path(self.recipe).is_file():
            raise FileNotFoundError(
                f"experiment recipe {self.recipe!r} does not exist"
                + (f" in {Path.cwd()} (a study's relative paths are read from the folder it runs in)"
                   if not Path(self.recipe).is_absolute() else "")
                + "; point `recipe:` at a training recipe YAML")
        for where, overrides in [("base", self.base)] + [(f"variants.{v}", o) for v, o in self.variants.items()]:
            for key in TRAIN_SET:  # train_config sets them: a value here would be dropped in silence
                if _has_key(overrides, key):
                    hint = " (the study's own data: {dir: ...} takes prepared data)" if key == "data.dir" else ""
                    raise ConfigKeyError(f"experiment {where}: {key!r} is set by the experiment; remove it{hint}")
        for key in EXPERIMENT_SET:
            if key in self.stream:
                raise ConfigKeyError(f"experiment stream: {key!r} is set by the experiment; remove it")
        if "out_dir" in self.data:  # prepare_config sets it: a value here was dropped in silence
            raise ConfigKeyError(f"experiment data: 'out_dir' is set by the experiment (the study prepares its data "
                                 f"in {self.root / 'data'}); remove it, or give data prepared elsewhere as data: "
                                 f"{{dir: ...}}")
        with in_section("data"):  # a range check in the config's own constructor names no section
            self.prepare_config()
        for v in self.variants:
            try:
                tc = self.train_config(v)
            except (ValueError, OSError) as e:  # name the variant: the key may sit in the recipe, base or variants.v
                raise type(e)(f"experiment variant {v!r}: {e}") from None
            if tc.checkpoint.every == 0:  # found now, not when the export finds no checkpoint after all the training
                raise ConfigKeyError(f"experiment variant {v!r}: checkpoint.every is 0, so its run saves no checkpoint "
                                     f"to export; set base.checkpoint.every to a number of steps")
        check_outside_inputs(self)  # before the stream and zeroshot checks, which name keys the study sets itself
        with in_section("stream"):  # a range check in the config's own constructor names no section
            self.stream_config([str(self.root / "export" / v) for v in self.variants])
        for key in EXPERIMENT_SET:
            if key in self.zeroshot:
                raise ConfigKeyError(f"experiment zeroshot: {key!r} is set by the experiment; remove it")
        with in_section("zeroshot"):  # unknown tasks and an incomplete data_dir fail now, not after training
            zc = self.zeroshot_config([str(self.root / "export" / v) for v in self.variants])
            if zc is not None:
                zc.validate()
        from sinktrain.model_source import resolve_model_source

        for spec in self.pretrained:  # a bad spec fails now, not after training; zoo models are fetched here
            resolve_model_source(spec)


def check_name(what: str, name) -> None:
    if not isinstance(name, str):  # YAML reads `1:`, `yes:` or `null:` as a number, a bool or None
        raise ConfigKeyError(f"{what} {name!r} is not text (YAML reads an unquoted 1, yes or null as a number, a "
                             f"bool or null); quote the name in the study file")
    if not name.replace("-", "").replace("_", "").isalnum():
        raise ConfigKeyError(f"{what} {name!r} must be letters, digits, - or _ (it names folders)")


def study_inputs(cfg: ExperimentConfig) -> list[tuple[str, str]]:
    """(what, path) of every local folder the study reads (anything else, a hub id or a zoo name, is skipped):
    pretrained models, data sources, prepared data, tokenizers, the stream text, the zero-shot data."""
    pc = cfg.prepare_config()
    inputs = [("pretrained model", p) for p in cfg.pretrained]
    if pc is None:
        inputs.append(("data.dir", str(cfg.data_dir)))
    else:
        inputs += [("data source", s) for s in pc.sources] + [("data.tokenizer", pc.tokenizer)]
    inputs += [(f"variant {v}'s data.tokenizer", cfg.train_config(v).data.tokenizer) for v in cfg.variants]
    inputs += [("stream.text", cfg.stream.get("text")), ("stream.tokenizer", cfg.stream.get("tokenizer")),
               ("zeroshot.data_dir", cfg.zeroshot.get("data_dir"))]
    return [(what, str(p)) for what, p in inputs if p and Path(str(p)).expanduser().is_dir()]


def check_outside_inputs(cfg: ExperimentConfig) -> None:
    """Refuse a study folder inside (or equal to) a folder the study reads: its data, training and export would
    be written into a model folder or a dataset, and fail only late, on a flag the study file does not have."""
    root = cfg.root.expanduser().resolve()
    for what, path in study_inputs(cfg):
        folder = Path(path).expanduser().resolve()
        if root == folder:
            raise FileExistsError(f"experiment runs_dir {cfg.runs_dir!r} makes the study folder {cfg.root} the "
                                  f"{what} {path!r} itself, which it reads; choose another name: or runs_dir:")
        if root.is_relative_to(folder):
            raise FileExistsError(f"experiment runs_dir {cfg.runs_dir!r} puts the study folder {cfg.root} inside "
                                  f"{what} {path!r}, which it reads; choose a runs_dir outside it")


@contextmanager
def in_section(section: str, where: str | None = None, flags: bool = True, phrases: tuple = ()):
    """Errors of a stage's own checks name its CLI flags (`--device`, `--data-dir`); in a study they are keys of a
    section: say `stream.device`, prefixed with the section, so the user knows what to edit in the study file.
    `where` names the part of the study instead of the section in the prefix (`experiment variant 'sink1'`:
    the data checks of one variant), the flags still map to keys of `section`. `phrases`: (text, study's words)
    replaced first, for flags that are no key of the section (training's --run-dir); `flags` False maps no other.
    `sinktrain experiment`'s own flags (--set, --runs_dir) are left as they are."""
    try:
        yield
    except (ValueError, OSError) as e:
        text = str(e)
        for said, meant in phrases:
            text = re.sub(said, meant, text)
        if flags:
            text = FLAG.sub(lambda m: m.group(0) if m.group(1) in STUDY_FLAGS
                            else f"{section}.{m.group(1).replace('-', '_')}", text)
        if not text.startswith("experiment "):  # one already said where it is (a check of the study itself)
            text = f"experiment {where or section}: {text}"
        try:
            again = type(e)(text)
        except TypeError:  # a constructor that takes more than a message (JSONDecodeError, UnicodeDecodeError)
            again = ValueError(text)
        raise again from None


FLAG = re.compile(r"--([a-z][a-z_-]*)")
STUDY_FLAGS = ("set", "runs_dir", "runs-dir", "config")


def deep_merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in (over or {}).items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_experiment(path: str | Path, runs_dir: str | None = None) -> ExperimentConfig:
    """A study file (and optionally another runs_dir), checked: the same parsing as `sinktrain experiment`."""
    from sinktrain.cli_config import parse_config

    argv = ["--config", str(path)] + ([f"--runs_dir={runs_dir}"] if runs_dir is not None else [])
    cfg = parse_config(ExperimentConfig, argv, prog="sinktrain experiment")
    cfg.validate()
    return cfg
