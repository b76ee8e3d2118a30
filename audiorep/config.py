"""THE config loader of every command: YAML -> typed dataclasses, ``key=value`` overrides checked against them.

:func:`load` is the one entry point (YAML file + overrides -> a checked dataclass); :func:`to_yaml` prints the
resolved config back (``--print-config``). A wrong key or a value of the wrong type fails with a
:class:`ConfigError` naming the dotted key and the type the dataclass expects, before any training starts
(a typo like ``optim.lr=2e-4x`` must not cost a cluster job).
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from pathlib import Path
from typing import Any, Sequence

import yaml

from .errors import ConfigError

_NONE_WORDS = ("none", "null", "~")


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _split_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> (X, True); anything else -> (tp, False)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Check (and minimally convert) ``value`` against the annotation ``tp``; ConfigError naming ``key``."""
    inner, optional = _split_optional(tp)
    if value is None or (optional and isinstance(value, str) and value.strip().lower() in _NONE_WORDS):
        if optional or tp is Any:
            return None
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got null")
    if dataclasses.is_dataclass(inner) and isinstance(inner, type):
        if isinstance(value, inner):
            return value
        return build(inner, value, key)
    if inner is Any:
        return value
    if inner is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off"):
            return value.lower() in ("true", "yes", "on")
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
    if inner is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if inner is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # PyYAML reads "2e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if inner is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{key}: expected str, got {value!r}")
    origin = typing.get_origin(inner)
    if origin in (list, tuple, typing.Sequence):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(inner)
        item_tp = args[0] if args else Any
        out = [coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    return value


def build(cls: type, data: Any, where: str = "config") -> Any:
    """Build dataclass ``cls`` from a mapping, recursively, checking every field's type."""
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping for {cls.__name__}, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where or 'config'}: unknown key(s) {unknown} for {cls.__name__}; valid: {sorted(fields)}")
    kwargs = {name: coerce(v, hints[name], f"{where}.{name}" if where else name) for name, v in data.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ConfigError) as exc:
        raise ConfigError(f"{where or 'config'}: {exc}") from exc


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain dict (YAML/JSON-safe; tuples become lists)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def _field_type(cls: type, dotted: str) -> Any:
    """The annotation at ``a.b.c`` inside ``cls``; ConfigError listing the valid keys when it does not exist.

    Inside a free-form mapping field (``dict[str, Any]``, e.g. ``head_args``) any sub-key is accepted: the
    consumer of that mapping checks its own keys.
    """
    tp: Any = cls
    walked: list[str] = []
    for part in dotted.split("."):
        inner, _ = _split_optional(tp)
        if inner is dict or typing.get_origin(inner) is dict:
            return Any
        if not (dataclasses.is_dataclass(inner) and isinstance(inner, type)):
            raise ConfigError(f"override {dotted}: {'.'.join(walked)} is a {_type_name(inner)}, not a section")
        hints = typing.get_type_hints(inner)
        names = [f.name for f in dataclasses.fields(inner) if f.init]
        if part not in names:
            prefix = ".".join(walked)
            raise ConfigError(f"override {dotted}: unknown key {part!r} in "
                              f"{prefix or 'the top level'}; valid: {', '.join(names)}")
        tp = hints[part]
        walked.append(part)
    return tp


def apply_overrides(cls: type, data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` strings to a config dict, type-checking each against ``cls`` (returns a new dict).

    Values are parsed as YAML scalars (``true``, ``3``, ``0.1``, ``null``, ``[1, 2]``), then checked
    against the field's annotation.
    """
    import copy

    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. optim.lr=1e-3)")
        key, raw = item.split("=", 1)
        key = key.strip()
        tp = _field_type(cls, key)
        try:
            parsed = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            parsed = raw
        inner, _ = _split_optional(tp)
        if dataclasses.is_dataclass(inner) and not (parsed is None or isinstance(parsed, dict)):
            raise ConfigError(f"override {key}: is a section ({inner.__name__}); set its fields as {key}.FIELD=value")
        value = coerce(parsed, tp, f"override {key}")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[parts[-1]] = to_dict(value)
    return out


def load(cls: type, path: str | os.PathLike | None = None, overrides: Sequence[str] = (),
         base: dict[str, Any] | None = None) -> Any:
    """YAML file (optional, on top of ``base``) + ``key=value`` overrides -> a checked ``cls`` instance.

    The one loader behind every command's ``--config FILE key=value ...``; errors name the file or the key.
    """
    data = dict(base or {})
    if path is not None and str(path) != "":
        data.update(read_yaml(path))
    return build(cls, apply_overrides(cls, data, overrides), "")


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML that :func:`load` reads back to an equal config (``--print-config``)."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False, default_flow_style=False, width=120)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file holding a mapping; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({exc})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
