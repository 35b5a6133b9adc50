"""One command-line pattern for every verb whose input is a stage config (data prepare, train, export, experiment).

A verb is declared once, from its config dataclass (see `sinktrain.config_io` for how to write one):

    def register(sub):
        add_config_verb(sub, "train", TrainConfig, run, help="pretrain a model from a recipe")

    def run(cfg: TrainConfig) -> int: ...

and then takes, parsed and type-checked by jsonargparse against the dataclass annotations:

    --config FILE          a YAML file with the config's keys (a recipe); repeatable, later files win
    --set KEY=VALUE        a dotted override, e.g. --set optim.lr=1e-3 (repeatable; the value is YAML)
    --KEY VALUE            the same override as a flag, e.g. --optim.lr 1e-3 or --run_dir runs/x
                           (into a mapping field, e.g. the experiment's `base`: sets that one nested key)
                           (`-` and `_` are interchangeable in flag names: --run-dir works too)
    POSITIONAL ...         for verbs that declare positionals (export SOURCE OUT_DIR): the named fields, in order
    --print_config         print the resolved config as YAML and exit
    --help                 every key, its type, default and help text, taken from the fields' docstrings

Precedence: defaults < --config files < overrides, in command-line order. Values are YAML (`--sinks [0,4]`, `--set
tokenizer=null`), except that an optional text field (`str | None`) takes its value as written: `--prompt "# Chapter
One"` is that text, where YAML would read a comment, i.e. None (only `null` and `~` mean None). A value of the wrong
type, an unknown key, or an out-of-range number is refused with one line (`sinktrain train: error:
trainer.max_steps: expected int, got 'ten'`), exit status 2, before the verb runs: nothing is written.

To move another verb (e.g. stream-eval) onto this pattern: give its config dataclass field docstrings and
range types, replace its `register` body with one `add_config_verb(...)` call (positionals=("models",) if
it keeps positional model folders: a list field takes every leading positional), and make `run` take the config.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import inspect
import json
import types
import typing
from pathlib import Path

import yaml

from sinktrain.config_io import ConfigKeyError, ConfigLoader, check_sections, explain, one_line


def add_config_verb(sub, name: str, cls, run, help: str, positionals: tuple[str, ...] = ()):
    """Register verb `name` on the `sinktrain` subparsers: its arguments are `cls`'s fields.

    The argparse subparser only names the verb (for `sinktrain --help`); everything after the verb name is
    handed to a jsonargparse parser built from `cls` when the verb runs.
    """
    p = sub.add_parser(name, help=help, add_help=False)
    prog = f"sinktrain {' '.join(p.prog.split()[1:])}"

    def func(args) -> int:
        return run(parse_config(cls, args.rest, prog=prog, positionals=positionals, description=help))

    p.set_defaults(func=func, config_verb=True)
    return p


def _description(cls, help: str) -> str:
    doc = inspect.getdoc(cls) or ""
    return f"{help[:1].upper()}{help[1:]}.\n\n{doc}" if doc else help


def _field_types(cls) -> dict[str, object]:
    return typing.get_type_hints(cls)


def bool_keys(cls, prefix: str = "") -> set[str]:
    """Dotted keys of the bool fields of `cls` and its nested dataclasses (a bare `--key` means true)."""
    keys = set()
    for name, tp in _field_types(cls).items():
        if tp is bool:
            keys.add(prefix + name)
        elif dataclasses.is_dataclass(tp):
            keys |= bool_keys(tp, f"{prefix}{name}.")
    return keys


def optional_text_keys(cls, prefix: str = "") -> set[str]:
    """Dotted keys of the `str | None` fields of `cls` and its nested dataclasses. jsonargparse reads their values
    as YAML and keeps a str only where the YAML is one: "# Rules" (a comment), "" and "null" all become None."""
    keys = set()
    for name, tp in _field_types(cls).items():
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and set(typing.get_args(tp)) == {str, type(None)}:
            keys.add(prefix + name)
        elif dataclasses.is_dataclass(tp):
            keys |= optional_text_keys(tp, f"{prefix}{name}.")
    return keys


def literal_texts(cls, argv: list[str]) -> dict[str, str]:
    """The values `normalise_argv`'s output gives the optional text fields, as written (the last one of each key
    wins, as in parsing); a --config file after an override takes that key back to the file's value."""
    keys = optional_text_keys(cls) if dataclasses.is_dataclass(cls) else set()
    texts: dict[str, str] = {}
    for i, arg in enumerate(argv):
        if arg == "--config" or arg.startswith("--config="):
            texts.clear()
            continue
        key, eq, value = arg[2:].partition("=")
        if arg.startswith("--") and key in keys and (eq or i + 1 < len(argv)):
            texts[key] = value if eq else argv[i + 1]  # --key=value, or --key value
    return {k: v for k, v in texts.items() if v not in ("null", "~")}


def normalise_argv(cls, argv: list[str], positionals: tuple[str, ...] = ()) -> list[str]:
    """`--set a.b=c` -> `--a.b=c`; `--run-dir` -> `--run_dir`; bare `--flag` -> `--flag=true` for a bool field;
    leading positionals -> `--<field>=value`."""
    flags = bool_keys(cls) if dataclasses.is_dataclass(cls) else set()
    out, pos, i = [], [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--set":
            if i + 1 >= len(argv) or "=" not in argv[i + 1]:
                raise ConfigKeyError("--set takes KEY=VALUE, e.g. --set trainer.max_steps=100")
            key, value = argv[i + 1].split("=", 1)
            if "" in key.strip().split("."):  # `=3` reached jsonargparse as `--=3`, `.=3` as unknown key ''
                raise ConfigKeyError(f"--set needs KEY=VALUE with a key, e.g. --set optim.lr=1e-3 (got "
                                     f"{argv[i + 1]!r})")
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = str(yaml.safe_load(value))  # a YAML-quoted string: --set name="my run"
            out.append(f"--{key.strip().replace('-', '_')}={value}")
            i += 2
            continue
        if arg.startswith("--set="):
            argv = [*argv[:i], "--set", arg[len("--set="):], *argv[i + 1:]]
            continue
        if arg.startswith("--") and len(arg) > 2:
            key, eq, value = arg[2:].partition("=")
            key = key.replace("-", "_")
            bare = not eq and (i + 1 >= len(argv) or argv[i + 1].startswith("-") or
                               argv[i + 1].lower() not in ("true", "false", "yes", "no", "1", "0"))
            out.append(f"--{key}=true" if key in flags and bare else "--" + key + eq + value)
        elif arg == "-h":
            out.append(arg)
        elif not out or not out[-1].startswith("--") or "=" in out[-1] or _is_flag(out[-1]):
            pos.append(arg)  # not the value of the option before it
            i += 1
            continue
        else:
            out.append(arg)
        i += 1
    if pos and not positionals:
        raise ConfigKeyError(f"unexpected argument {pos[0]!r}; this verb takes only --KEY VALUE options")
    return [*_positionals_to_options(cls, pos, positionals), *_comma_lists(cls, out)]


def _comma_lists(cls, argv: list[str]) -> list[str]:
    """`--sinks 0,1,4` (or `--sinks 4`) for a list field -> `--sinks=[0,1,4]`: the spelling people type. A value
    already written as a YAML list passes through. Fields that also take a plain string (`sources: list[str] |
    str`, where a path may hold a comma) keep jsonargparse's own handling."""
    fields = _field_types(cls) if dataclasses.is_dataclass(cls) else {}

    def is_list(tp) -> bool:
        union = typing.get_origin(tp) in (typing.Union, types.UnionType)
        options = [t for t in typing.get_args(tp) if t is not type(None)] if union else [tp]
        return len(options) == 1 and typing.get_origin(options[0]) is list

    lists = {name for name, tp in fields.items() if is_list(tp)}
    out, i = [], 0
    while i < len(argv):
        key, eq, value = argv[i].partition("=")
        if not eq and key[2:] in lists and i + 1 < len(argv):
            eq, value, i = "=", argv[i + 1], i + 1
        if key.startswith("--") and key[2:] in lists and eq and not value.lstrip().startswith("["):
            value = "[" + value + "]"
        out.append(key + eq + value)
        i += 1
    return out


def _is_flag(option: str) -> bool:
    return option in ("--help", "--print_config", "-h")


def _positionals_to_options(cls, values: list[str], names: tuple[str, ...]) -> list[str]:
    """Positionals fill `names` in order; a list field takes all the remaining ones."""
    fields = _field_types(cls) if dataclasses.is_dataclass(cls) else {}
    opts, rest = [], list(values)
    for name in names:
        if not rest:
            break
        if typing.get_origin(fields.get(name)) is list:
            opts.append(f"--{name}={json.dumps(rest)}")
            rest = []
        else:
            opts.append(f"--{name}={rest.pop(0)}")
    if rest:
        expected = " ".join(n.upper() for n in names)
        raise ConfigKeyError(f"unexpected argument {rest[0]!r}; the positionals are {expected}")
    return opts


def _help_formatter():
    import jsonargparse

    class HelpFormatter(jsonargparse.DefaultHelpFormatter, argparse.RawDescriptionHelpFormatter):
        """jsonargparse's (type and default after each help text), with the description kept as written."""

    return HelpFormatter


def split_mapping_overrides(cls, argv: list[str]) -> tuple[list[str], list[tuple[str, list[str], object]]]:
    """Take the dotted overrides into a mapping field (`--base.trainer.max_time=6` for the experiment's `base:
    dict`) out of `argv`, as (field, path, YAML value). jsonargparse would replace the whole `base.trainer` with
    `{max_time: '6'}`, dropping its other keys; `parse_config` sets the one key instead. They apply after every
    --config file, whatever their place on the command line."""
    fields = {n for n, tp in _field_types(cls).items() if tp is dict or typing.get_origin(tp) is dict} \
        if dataclasses.is_dataclass(cls) else set()
    rest, sets, i = [], [], 0
    while i < len(argv):
        key, eq, value = argv[i].partition("=")
        field, dot, path = key[2:].partition(".")
        if key.startswith("--") and field in fields and dot:
            if not eq:  # --base.trainer.max_time 6
                if i + 1 >= len(argv):
                    raise ConfigKeyError(f"{key} takes a value, e.g. {key}=6")
                value, i = argv[i + 1], i + 1
            sets.append((field, path.split("."), yaml.safe_load(value)))
        else:
            rest.append(argv[i])
        i += 1
    return rest, sets


def set_nested(mapping, field: str, path: list[str], value) -> dict:
    """A copy of `mapping` with `value` at `path` (missing levels created); one line if a level is not a mapping."""
    out = dict(mapping or {})
    node = out
    for depth, key in enumerate(path[:-1]):
        child = node.get(key)
        if child is None:
            child = {}
        elif not isinstance(child, dict):
            where = ".".join([field, *path[:depth + 1]])
            raise ConfigKeyError(f"{where} is {child!r}, not a mapping, so {'.'.join([field, *path])} cannot be set")
        node[key] = dict(child)
        node = node[key]
    node[path[-1]] = value
    return out


# Built once per verb and process: building one costs 66 ms (jsonargparse reads each dataclass's source for its
# field docstrings), more than parsing with it, and a study builds the same verbs' parsers again and again. A parser
# keeps no state between parse_args calls.
@functools.cache
def config_parser(cls, prog: str, description: str, positionals: tuple[str, ...] = ()):
    import jsonargparse

    jsonargparse.set_parsing_settings(docstring_parse_attribute_docstrings=True)
    usage = (f"{prog} " + "".join(f"[{n.upper()}] " for n in positionals)
             + "[--config FILE] [--set KEY=VALUE ...] [--KEY VALUE ...]")
    parser = jsonargparse.ArgumentParser(prog=prog, usage=usage, description=description, exit_on_error=False,
                                         default_env=False, formatter_class=_help_formatter(), allow_abbrev=False)
    parser.add_argument("--config", action=jsonargparse.ActionConfigFile,
                        help="YAML file with this verb's keys (repeatable; later files and overrides win)")
    parser.add_argument("--set", metavar="KEY=VALUE", help="dotted override, e.g. --set optim.lr=1e-3 (repeatable)")
    parser.add_class_arguments(cls, nested_key=None, as_group=False, fail_untyped=True)
    return parser


def parse_config(cls, argv: list[str], prog: str, positionals: tuple[str, ...] = (), description: str = ""):
    """Build `cls` from command-line arguments; ConfigKeyError (one line) on any bad key, type or range."""
    import jsonargparse

    from sinktrain.config_io import instantiate

    parser = config_parser(cls, prog, _description(cls, description), positionals)
    argv = normalise_argv(cls, list(argv), positionals)
    from sinktrain.config_io import load_yaml

    for i, arg in enumerate(argv):  # a missing or garbage --config file: one line naming it (jsonargparse's doesn't)
        path = argv[i + 1] if arg == "--config" and i + 1 < len(argv) else \
            arg[len("--config="):] if arg.startswith("--config=") else None
        if path is None:
            continue
        data = load_yaml(path)
        # An empty or comment-only file (not `{}`, which jsonargparse takes): it said "Unexpected config: <text>".
        if not data and yaml.load(Path(path).read_text(), ConfigLoader) is None:
            raise ConfigKeyError(f"config file {path!r} holds no keys; write the config's keys in it (`--help` "
                                 f"lists them)")
        check_sections(cls, data, path)  # `trainer: 5` in a file: jsonargparse's instantiate raised a TypeError
    argv, mapping_sets = split_mapping_overrides(cls, argv)
    # jsonargparse prints --print_config inside parse_args, before the literal texts are put back: print it here.
    print_config = "--print_config" in argv
    try:
        namespace = parser.parse_args([a for a in argv if a != "--print_config"])
    except jsonargparse.ArgumentError as e:
        raise ConfigKeyError(explain(cls, one_line(e))) from None
    namespace.pop("config", None)
    namespace.pop("set", None)
    for field, path, value in mapping_sets:
        have = namespace[field] or {}
        if field in getattr(cls, "NAMED_MAPPINGS", ()) and len(path) > 1 and path[0] not in have:
            raise ConfigKeyError(
                f"{field}.{'.'.join(path)}: there is no {path[0]!r} under `{field}` (it has: "
                f"{', '.join(map(str, have)) or 'nothing'}); a new entry is given whole: "
                f"--set '{field}.{path[0]}={{{path[1]}: ...}}'")
        namespace[field] = set_nested(namespace[field], field, path, value)
    for key, text in literal_texts(cls, argv).items():
        namespace[key] = text
    try:
        cfg = instantiate(cls, parser, namespace)  # before --print_config: it prints only a config that holds
    except jsonargparse.ArgumentError as e:
        raise ConfigKeyError(explain(cls, one_line(e))) from None
    if print_config:
        print(parser.dump(namespace, skip_unset=False), end="")
        raise SystemExit(0)
    return cfg
