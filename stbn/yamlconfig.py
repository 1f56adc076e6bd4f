"""YAML loaded once into frozen dataclasses, shared by the pipeline and training configs.

Every error names the dotted key it is about (``unknown key 'sources[0].urll'``, ``key
'optim.lr' must be a number``); ``--set key=value`` overrides are typed by the field they land on.
"""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from pathlib import Path
from typing import Any, TypeVar, Union

import yaml

EnumT = TypeVar("EnumT", bound=enum.Enum)


class ConfigError(ValueError):
    """A config that cannot be used: unknown key, bad value, unreadable file."""


class _Override(str):
    """A ``--set`` value: typed by the field it lands on (strings stay strings)."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, _Override) and value.lower() in ("null", "none", "~")):
            return None
        return _convert(args[0], value, key)
    if isinstance(value, _Override) and tp is not str:
        value = yaml.safe_load(str(value))
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if value is None:
            value = {}
        if not isinstance(value, dict):
            raise ConfigError(f"key '{key}' must be a mapping, got {type(value).__name__}")
        return from_dict(tp, value, key)
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"key '{key}' must be a list, got {type(value).__name__}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"key '{key}' must have {len(args)} entries, got {value!r}")
        return tuple(_convert(a, v, f"{key}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return enum_member(tp, value, f"key '{key}'")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"key '{key}' must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"key '{key}' must be an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"key '{key}' must be a number, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"key '{key}' must be a string, got {value!r}")
    raise ConfigError(f"key '{key}': unsupported type {_type_name(tp)}")


def enum_member(kind: type[EnumT], value: Any, key: str) -> EnumT:
    """``value`` (a member of ``kind`` or its value, as a config names it) as a member of ``kind``,
    or a ConfigError naming ``key`` and the choices: the one check behind every enum-typed option,
    whether it comes from YAML or from code."""
    if isinstance(value, kind):
        return value
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(str(m.value) for m in kind)
        raise ConfigError(f"{key} must be one of {choices}, got {value!r}") from None


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; every error names the dotted key."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    kwargs = {}
    for key, value in data.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown key '{dotted}'")
        kwargs[key] = _convert(hints[key], value, dotted)
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(_name_key(str(exc), prefix, names)) from None


def _name_key(msg: str, prefix: str, names: set[str]) -> str:
    """Prefix a dataclass's own validation message with where it sits in the config."""
    first = msg.split(" ", 1)[0]
    if "." in first:  # already dotted (engine.backend must be ...): re-root it on the full prefix
        head, _, rest = msg.partition(".")
        return f"{prefix}.{rest}" if prefix and prefix.split(".")[-1].split("[")[0] == head else msg
    if first in names and prefix:
        return f"{prefix}.{msg}"
    return f"{prefix}: {msg}" if prefix else msg


def apply_override(data: dict[str, Any], assignment: str) -> None:
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, value = assignment.split("=", 1)
    parts: list[str | int] = []
    for part in key.strip().split("."):
        while "[" in part:  # sources[0] -> sources, 0
            name, rest = part.split("[", 1)
            index, part = rest.split("]", 1)
            if name:
                parts.append(name)
            try:
                parts.append(int(index))
            except ValueError:
                raise ConfigError(f"bad index in --set key {key!r}") from None
        if part:
            parts.append(int(part) if part.isdigit() else part)
    node: Any = data
    for i, part in enumerate(parts[:-1]):
        nxt = parts[i + 1]
        if isinstance(part, int):
            if not isinstance(node, list) or part >= len(node):
                raise ConfigError(f"--set {key}: index {part} out of range")
            if node[part] is None:
                node[part] = {}
            node = node[part]
        else:
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: '{part}' is not inside a mapping")
            if node.get(part) is None:
                node[part] = [] if isinstance(nxt, int) else {}
            node = node[part]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"--set {key}: index {last} out of range")
        node[last] = yaml.safe_load(value)
    else:
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: not a mapping")
        node[last] = _Override(value)


def read_yaml_mapping(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML file (empty file -> {})."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} not found")
    try:
        loaded = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"config file {str(p)!r} must hold a mapping at the top level")
    return loaded or {}


def to_dict(config: Any) -> Any:
    """Plain dict of a config (for the report)."""
    if dataclasses.is_dataclass(config):
        return {f.name: to_dict(getattr(config, f.name)) for f in dataclasses.fields(config)}
    if isinstance(config, tuple):
        return [to_dict(v) for v in config]
    if isinstance(config, enum.Enum):
        return config.value
    return config
