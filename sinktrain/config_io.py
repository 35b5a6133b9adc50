"""Dataclass configs from YAML/dicts: unknown keys are errors, nested dataclasses are built recursively.

Every stage's config is a dataclass; recipes are YAML files that compose them. This module is the one
place that turns plain dicts into those dataclasses and back.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from pathlib import Path

import yaml


class ConfigKeyError(ValueError):
    """An unknown or mistyped key in a config file."""


def _dataclass_type(tp):
    """Return the dataclass inside `tp` (handles `X | None`), else None."""
    if dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        if dataclasses.is_dataclass(arg):
            return arg
    return None


def build_dataclass(cls, data: dict | None, where: str = "config"):
    """Build dataclass `cls` from `data`, recursing into nested dataclass fields.

    Raises ConfigKeyError naming the unknown key, where it sits, and the accepted keys.
    """
    if data is None:
        data = {}
    if dataclasses.is_dataclass(data) and isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigKeyError(f"{where}: expected a mapping of keys, got {type(data).__name__} {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigKeyError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; accepted keys: {', '.join(fields)}"
        )
    kwargs = {}
    for name, value in data.items():
        sub = _dataclass_type(hints.get(name))
        if sub is not None and isinstance(value, dict):
            value = build_dataclass(sub, value, where=f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def to_dict(obj) -> dict:
    return dataclasses.asdict(obj)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist; pass the path of a YAML recipe")
    try:
        with open(path) as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        raise ConfigKeyError(f"{path} is not valid YAML ({getattr(e, 'problem', None) or e}{at}); fix the file") from e
    except UnicodeDecodeError as e:
        raise ConfigKeyError(f"{path} is not a text file ({e.reason}); pass a YAML recipe") from e
    if not isinstance(data, dict):
        raise ConfigKeyError(f"{path}: a recipe must be a YAML mapping at the top level")
    return data


def write_json_atomic(path: str | Path, obj) -> None:
    """Write JSON to a temporary name, then rename: a reader never sees a half-written file."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=False)
        f.write("\n")
    tmp.replace(path)


def write_yaml_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(obj, f, sort_keys=False)
    tmp.replace(path)
