"""YAML configs -> frozen dataclasses.

One YAML file describes one run. Loading is strict: an unknown key, a missing required key or a value
of the wrong type is an error that names the file and the dotted key. Overrides use the form
``--set model.latent_dim=128``; the value is parsed as YAML (so ``1e-3``, ``true``, ``[1, 2]`` work).
No import strings, no environment interpolation, no ``eval``.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is malformed; the message names the file and the key."""


class FieldError(ConfigError):
    """A config dataclass was built with a value out of its range (raised by its ``__post_init__``);
    :func:`from_dict` puts the key's dotted path in front of ``name``."""

    def __init__(self, owner: str, name: str, reason: str):
        super().__init__(f"{owner}.{name}: {reason}")
        self.name, self.reason = name, reason


# rule -> (test, what the value must be); None values (optional settings left unset) always pass
_RULES = {
    "positive": (lambda v: v > 0, "must be > 0"),
    "non_negative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 < v < 1, "must lie strictly between 0 and 1"),
}


def check_fields(obj: Any, **rules: str) -> None:
    """Raise :class:`FieldError` for the first field of dataclass ``obj`` whose value breaks its rule
    (``"positive"``, ``"non_negative"`` or ``"fraction"``); a non-finite number breaks every rule. Called
    from a config dataclass's ``__post_init__`` so that no run starts with, say, ``batch_size: 0``."""
    declared = {f.name: str(f.type) for f in dataclasses.fields(obj)}
    for name, rule in rules.items():
        value = getattr(obj, name)
        if value is None:
            continue
        test, text = _RULES[rule]
        if rule == "positive" and declared.get(name, "").startswith("int"):   # the field's type, not the value's
            text = "must be at least 1"
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not (number and math.isfinite(value) and test(value)):
            raise FieldError(type(obj).__name__, name, f"{text}, got {value!r}")


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    with open(path) as fh:
        try:
            data = yaml.safe_load(fh)
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def apply_overrides(data: dict, overrides: list[str] | None) -> dict:
    """Return a copy of ``data`` with ``key.sub=value`` overrides applied (values parsed as YAML)."""
    out = _deep_copy(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        parts = key.strip().split(".")
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        try:
            node[parts[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            problem = getattr(err, "problem", None) or type(err).__name__
            raise ConfigError(f"override {item!r}: the value of {key.strip()} is not valid YAML "
                              f"({problem}); quote it or fix the brackets") from None
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def from_dict(cls: type[T], data: dict, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, strictly. ``where`` prefixes error messages."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}: missing required key {name!r}")
    try:
        return cls(**kwargs)
    except FieldError as err:   # the dataclass's own range check: name the key by its path
        raise ConfigError(f"{where}.{err.name}: {err.reason}") from None


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        item_tp = args[0] if args else Any
        items = [_convert(item_tp, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        if len(args) == 2:   # dict[K, V]: keys and values converted (a dataclass V is built strictly)
            return {_convert(args[0], k, where): _convert(args[1], v, f"{where}.{k}") for k, v in value.items()}
        return dict(value)
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 reads "1e-3" (no dot) as a string; accept any float literal here
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def to_dict(obj: Any) -> Any:
    """Plain-python (YAML/JSON-ready) view of a config dataclass."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def load_config(cls: type[T], path: str | Path, overrides: list[str] | None = None) -> T:
    """Read ``path``, apply overrides, build ``cls`` strictly."""
    data = apply_overrides(load_yaml(path), overrides)
    return from_dict(cls, data, where=str(path))


def dump_yaml(obj: Any, path: str | Path) -> None:
    from genlowdim.runtime import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(obj), sort_keys=False))
