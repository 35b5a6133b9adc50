"""Typed configs: one mechanism for every stage's config, from YAML, from `--set`, and from Python.

The pattern (how to write a stage config; `sinktrain/cli_config.py` turns one into a verb):

    from sinktrain.config_io import NonNegativeInt, PositiveInt, configclass

    @configclass("trainer")                 # a dataclass whose fields are range-checked on construction
    class TrainerConfig:
        max_steps: PositiveInt = 143_000
        '''Optimizer steps to train for.'''   # the field's docstring: its `--help` text (never copied by hand)
        val_every: NonNegativeInt = 1000
        '''Optimizer steps between validations; 0 disables.'''

- Types: jsonargparse (the library behind Lightning's CLI) checks every value read from a file, a `--set`
  override or a flag against the field's annotation: an int is accepted for a float, `1e-3` is a float,
  `ten` for an int is refused, and an unknown key is refused. `build_dataclass` applies the same checks to
  plain dicts (experiment files, run directories).
- Ranges: annotate a number with one of the constrained types below (`PositiveInt`, `NonNegativeInt`,
  `PositiveFloat`, `NonNegativeFloat`, `Fraction`, `Probability`, `Seed`) or with
  `Annotated[int, Range(ge=..., le=...)]`.
  `configclass` checks every such field in `__post_init__`, before the class's own `__post_init__` runs, so the
  check holds however the config is built (YAML, `--set`, experiment file, Python), and a field added later
  with such an annotation is range-checked with no extra code. `X | None` fields accept None; in a
  `list[PositiveInt]` every item is checked.
- Errors are `ValueError`s with one line naming the key, the bad value and what is accepted; the CLI prints
  them as one line and exits 2 before anything is written.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
import reprlib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import yaml

from sinktrain.util.atomic import write_json_atomic, write_yaml_atomic  # noqa: F401  (re-exported)
from sinktrain.util.text_files import FOLDER, MISSING, file_problem


class ConfigKeyError(ValueError):
    """An unknown, mistyped or out-of-range key in a config."""


# ---------------------------------------------------------------- ranges, declared once per field


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, used as `Annotated[int, Range(ge=1)]` metadata."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def describe(self) -> str:
        bounds = ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
        parts = [f"{op} {int(v) if float(v).is_integer() else v}" for op, v in bounds
                 if v is not None]
        return " and ".join(parts)

    def contains(self, x: float) -> bool:
        return ((self.ge is None or x >= self.ge) and (self.gt is None or x > self.gt)
                and (self.le is None or x <= self.le) and (self.lt is None or x < self.lt))


PositiveInt = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegativeFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, lt=1)]  # [0, 1)
Probability = Annotated[float, Range(ge=0, le=1)]  # [0, 1]
Seed = Annotated[int, Range(ge=0, le=2**32 - 1)]  # what torch / numpy / Lightning accept without a warning


def _range_of(tp) -> tuple[type, Range] | None:
    """(int|float, Range) for `Annotated[number, Range]`, also inside `X | None` and `list[...]`; else None."""
    if typing.get_origin(tp) is list:
        return _range_of(typing.get_args(tp)[0]) if typing.get_args(tp) else None
    if typing.get_origin(tp) is Annotated:
        base, *meta = typing.get_args(tp)
        found = [m for m in meta if isinstance(m, Range)]
        return (base, found[0]) if found else None
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            hit = _range_of(arg)
            if hit is not None:
                return hit
    return None


def _other_types(tp) -> tuple[type, ...]:
    """Plain types a union admits besides its ranged number (`PositiveInt | str` admits str: "auto")."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return ()
    return tuple(a for a in typing.get_args(tp) if isinstance(a, type) and a not in (int, float, type(None)))


@functools.cache
def _ranged_fields(cls) -> dict[str, tuple[type, Range, tuple[type, ...]]]:
    hints = typing.get_type_hints(cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(cls):
        hit = _range_of(hints.get(f.name))
        if hit is not None:
            out[f.name] = (*hit, _other_types(hints.get(f.name)))
    return out


def _admits_none(tp) -> bool:
    if tp is typing.Any or tp is type(None):
        return True
    if typing.get_origin(tp) is Annotated:
        return _admits_none(typing.get_args(tp)[0])
    return typing.get_origin(tp) in (typing.Union, types.UnionType) and any(map(_admits_none, typing.get_args(tp)))


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Annotated:
        return _type_name(typing.get_args(tp)[0])
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return " or ".join(map(_type_name, typing.get_args(tp)))
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


@functools.cache
def _required_fields(cls) -> dict[str, str]:
    """Name -> type name of the fields whose annotation does not admit None."""
    hints = typing.get_type_hints(cls, include_extras=True)
    return {f.name: _type_name(hints[f.name]) for f in dataclasses.fields(cls) if not _admits_none(hints[f.name])}


def check_fields(obj, section: str = "") -> None:
    """Raise ConfigKeyError for a None in a field whose type does not admit it, and for a ranged field whose value
    is not a finite number of its type inside its range."""
    prefix = f"{section}." if section else ""
    for name, type_name in _required_fields(type(obj)).items():
        # jsonargparse lets a YAML `key: null` (or a blank `key:`) through for any type; the code behind a `str`
        # field would then read None (a text field named None, a path "None").
        if getattr(obj, name) is None:
            raise ConfigKeyError(f"{prefix}{name}: expected {type_name}, got null; give a value or leave the key "
                                 f"out for its default")
    for name, (base, rng, others) in _ranged_fields(type(obj)).items():
        value = getattr(obj, name)
        if value is None or (others and isinstance(value, others)):
            continue  # None or a non-number the annotation allows; jsonargparse checks those from files
        items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
        for i, item in items:
            _check_number(f"{prefix}{name}" + (f"[{i}]" if i is not None else ""), item, base, rng)


def _check_number(key: str, value, base: type, rng: Range) -> None:
    kind = "an integer" if base is int else "a number"
    is_number = isinstance(value, int) if base is int else isinstance(value, (int, float))
    if isinstance(value, bool) or not is_number or (isinstance(value, float) and math.isnan(value)):
        raise ConfigKeyError(f"{key} must be {kind} {rng.describe()}, got {value!r}")
    if isinstance(value, float) and math.isinf(value):  # .inf or 1e400 passes `>= 0`: no setting means infinity
        raise ConfigKeyError(f"{key} must be a finite number {rng.describe()}, got {value!r}")
    if not rng.contains(value):
        raise ConfigKeyError(f"{key} must be {rng.describe()}, got {value!r}")


def configclass(section: str = ""):
    """`@dataclass` whose ranged fields are checked on construction (before the class's own `__post_init__`).

    `section` is the key under which the config sits in a recipe (`trainer`, `optim`, ...), for error messages.
    """

    def wrap(cls):
        own = cls.__dict__.get("__post_init__")

        def __post_init__(self):
            check_fields(self, section)
            if own is not None:
                own(self)

        cls.__post_init__ = __post_init__  # set before @dataclass, which only calls it if it exists then
        cls.__config_section__ = section
        return dataclasses.dataclass(cls)

    return wrap


# ---------------------------------------------------------------- dicts <-> dataclasses, typed by jsonargparse


_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 80  # a value quoted in an error line: a 100,000-item list in a config made a 700 kB line


def one_line(message) -> str:
    """jsonargparse's (multi-line) message as one line: `trainer.max_steps: expected int, got 'ten'`."""
    text = " ".join(str(message).split())
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = text.replace("NoneType", "null")
    patterns = [
        (r'Parser key "([^"]+)": Expected an? (\S+?)\. Got value:\s?(.*)',  # (an empty value: no space after)
         lambda m: f"{m[1]}: expected {m[2]}, got {_SHOWN.repr(m[3])}"),
        # `--set trainer=5`: a section given a value (jsonargparse tries to read it as a config file, twice)
        (r"^(?:Parser key \")?([\w.]+)\"?: Unable to load config '([^']*)'.*",
         lambda m: f"{m[1]} is a section of keys, not a value (got {_SHOWN.repr(m[2])}); set its keys as "
                   f"{m[1]}.KEY=VALUE"),
        (r'Parser key "([^"]+)": Does not validate against any of the Union subtypes Subtypes: \[(.*?)\] Errors:.*'
         r"Given value: (.*)", lambda m: f"{m[1]}: expected {m[2].replace(', ', ' or ')}, got {_SHOWN.repr(m[3])}"),
        (r"unrecognized arguments: --([^= ]+).*", lambda m: f"unknown key {m[1]!r}"),
        (r"Option '([^']+)' is not accepted.*", lambda m: f"unknown key {m[1]!r}"),
        (r"Group '([^']+)' does not accept option '([^']+)'.*", lambda m: f"unknown key '{m[1]}.{m[2]}'"),
        (r'Parser key "([^"]+)": ', lambda m: f"{m[1]}: "),
        (r"config: File does not exist: (.*)",
         lambda m: f"config file {m[1]} does not exist; pass the path of a YAML file"),
    ]
    for pattern, repl in patterns:
        text = re.sub(pattern, repl, text)
    # `--set trainer.max_steps=1e3`: YAML reads 1e3 as the float 1000.0, which the message then shows
    text = re.sub(r"expected int, got '(-?\d+)\.0'$",
                  lambda m: f"expected int, got {m[1]}.0 (YAML reads 1e3 as a float); write the integer, {m[1]}", text)
    return text


def explain(cls, message: str) -> str:
    """Add the accepted keys to an unknown-key message about dataclass `cls`. A key under a section that does
    not exist (`model.sink.kind` given to a study file) is reported at that section: `unknown key 'model'`."""
    m = re.search(r"^([\w.]+) is a section of keys, not a value", message)
    if m:  # name the keys it takes
        node = cls
        for name in m[1].split("."):
            hint = typing.get_type_hints(node).get(name)
            node = next((a for a in (hint, *typing.get_args(hint)) if dataclasses.is_dataclass(a)), None)
            if node is None:
                return message
        return f"{message} ({', '.join(f.name for f in dataclasses.fields(node) if f.init)})"
    m = re.search(r"unknown key '([^']+)'", message)
    if not m:
        return message
    parts = m[1].split(".")
    node, depth = cls, 0
    for name in parts[:-1]:
        hints = typing.get_type_hints(node)
        if name not in hints:
            break  # the section itself is unknown: report it, with the keys accepted where it stood
        child = next((a for a in (hints[name], *typing.get_args(hints[name])) if dataclasses.is_dataclass(a)), None)
        if child is None:
            return message  # a free-form section (a dict): no key list to give
        node, depth = child, depth + 1
    section = parts[:depth]
    where = f" in {'.'.join(section)}" if section else ""
    keys = ", ".join(f.name for f in dataclasses.fields(node) if f.init)
    return f"unknown key {'.'.join(parts[:depth + 1])!r}; accepted keys{where}: {keys}"


@functools.cache
def dataclass_parser(cls):
    """A jsonargparse parser whose keys are `cls`'s fields (nested dataclasses as dotted keys)."""
    import jsonargparse

    jsonargparse.set_parsing_settings(docstring_parse_attribute_docstrings=True)
    parser = jsonargparse.ArgumentParser(exit_on_error=False, default_env=False)
    parser.add_class_arguments(cls, nested_key=None, as_group=False, fail_untyped=True)
    return parser


def instantiate(cls, parser, namespace):
    """Build `cls` from a parsed namespace (nested dataclasses are built by jsonargparse, bottom-up)."""
    built = parser.instantiate(namespace)
    return cls(**{f.name: getattr(built, f.name) for f in dataclasses.fields(cls) if f.init and f.name in built})


def build_dataclass(cls, data: dict | None, where: str = "config"):
    """Build dataclass `cls` from a plain dict, type-checked against its annotations, ranges checked.

    Raises ConfigKeyError (one line) naming the unknown or mistyped key and where it sits.
    """
    import jsonargparse

    if data is None:
        data = {}
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigKeyError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    check_sections(cls, data, where)
    parser = dataclass_parser(cls)
    plain = to_plain(data)
    key = (cls, repr(plain))  # repr tells 1, 1.0 and True apart, as the type checks do
    if key not in _PARSED:
        try:
            namespace = parser.parse_object(plain)
        except jsonargparse.ArgumentError as e:
            raise ConfigKeyError(f"{where}: {explain(cls, one_line(e))}") from None
        if len(_PARSED) >= 256:
            _PARSED.clear()
        _PARSED[key] = namespace
    return instantiate(cls, parser, _PARSED[key].clone())


# (dataclass, repr of the plain dict) -> jsonargparse's parse of it. Parsing costs ~30 ms per TrainConfig and a
# study builds each variant's config several times per run; the dataclass itself is built anew each time (its
# __post_init__ checks run, and no caller shares a mutable config with another).
_PARSED: dict = {}


def check_sections(cls, data: dict, where: str, prefix: str = "") -> None:
    """Each key that holds a nested dataclass (`trainer`, `model.sink`) must hold a mapping of its keys: given
    `trainer: 5`, jsonargparse fails with a traceback, and given `model: 3` it builds the defaults in silence."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, value = hints.get(f.name), data.get(f.name)
        if not (dataclasses.is_dataclass(tp) and f.name in data) or isinstance(value, tp):
            continue
        if not isinstance(value, dict):  # null too: jsonargparse's instantiate raised a TypeError for `trainer:`
            shown = "null" if value is None else _SHOWN.repr(value)
            raise ConfigKeyError(f"{where}: {prefix}{f.name} is {shown}, not a mapping of its keys; give it as "
                                 f"{prefix}{f.name}: {{key: value, ...}} or set {prefix}{f.name}.KEY")
        check_sections(tp, value, where, f"{prefix}{f.name}.")


def to_plain(data):
    """Dataclasses inside `data` as dicts (jsonargparse parses plain values)."""
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        return dataclasses.asdict(data)
    if isinstance(data, dict):
        return {k: to_plain(v) for k, v in data.items()}
    return data


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def dotted_value(config: dict, key: str):
    """`config["a"]["b"]` for key "a.b"; None where a level is missing."""
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


class ConfigLoader(yaml.SafeLoader):
    """SafeLoader for a user's config file, refusing what SafeLoader takes in silence; each refusal is a
    ConfigKeyError naming the file (the stream's name) and the line."""

    def compose_node(self, parent, index):
        # `*name` repeats what `&name` holds: seven nested levels expanded to a 34 MB error line, a few more to all
        # the memory there is. A config has no need of them.
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise ConfigKeyError(f"{self.name} uses YAML aliases (*{event.anchor} at line {event.start_mark.line + 1}"
                                 f"); write the values out")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        # SafeLoader keeps the last of two equal keys: `cache: 64` then `cache: 128` ran with 128, unsaid
        lines: dict = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: {...}` merges a mapping in; the keys written beside it override it, as YAML says
            key, line = self.construct_object(key_node, deep=deep), key_node.start_mark.line + 1
            if not isinstance(key, str):  # jsonargparse said "Key must be a string, got: 1.", naming no file or fix
                raise ConfigKeyError(_not_a_name(self.name, key, key_node, line))
            if key in lines:
                raise ConfigKeyError(f"{self.name} gives key {key!r} twice (lines {lines[key]} and {line}); "
                                     f"keep one")
            lines[key] = line
        return super().construct_mapping(node, deep)


def _not_a_name(name: str, key, key_node, line: int) -> str:
    """The line for a mapping key that YAML reads as no text: `1:`, `yes:` (true), `~:` (null), `[a, b]:`."""
    read_as = {bool: "true/false", int: "a number", float: "a number", type(None): "null"}.get(type(key))
    if isinstance(key_node, yaml.ScalarNode) and read_as:
        return (f"{name}: key {key_node.value} at line {line} is read as {read_as}, not a name; config keys are "
                f"names (quote it, '{key_node.value}', where it is meant as one)")
    return f"{name}: the key at line {line} is read as {type(key).__name__}, not a name; config keys are names"


def load_yaml(path: str | Path) -> dict:
    # file_problem, not is_file(): that is False alike for a missing path, /dev/null and a symlink loop, so each
    # was called missing
    problem = file_problem(path)
    if problem is not None:
        error = {MISSING: FileNotFoundError, FOLDER: IsADirectoryError}.get(problem, ConfigKeyError)
        raise error(f"config file {str(path)!r} {problem}; pass the path of a YAML config file")
    path = Path(path)
    try:
        with open(path) as f:
            data = yaml.load(f, Loader=ConfigLoader) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigKeyError(f"{path} is not valid YAML ({getattr(e, 'problem', None) or e}{at}); fix the file") from e
    except UnicodeDecodeError as e:
        raise ConfigKeyError(f"{path} is not a text file ({e.reason}); pass a YAML recipe") from e
    except RecursionError:  # PyYAML reads nested values recursively: `[[[[...` 100k deep exceeded Python's stack
        raise ConfigKeyError(f"{path} is nested too deeply to read; a config holds a few levels of keys, write it "
                             f"flatter") from None
    if not isinstance(data, dict):
        raise ConfigKeyError(f"{path}: a recipe must be a YAML mapping at the top level")
    if "set" in data:  # the --set option's slot in jsonargparse: a `set: seed=7` line would be dropped silently
        raise ConfigKeyError(f"{path}: 'set' is a command-line option, not a key; write each override as its own key "
                             f"(e.g. seed: 7 for set: seed=7)")
    return data
