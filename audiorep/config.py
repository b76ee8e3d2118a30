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
MAX_OVERRIDE_CHARS = 65_536  # one key=value on a command line; paths and lists fit, a pasted file does not


def _short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters (a 10 MB string must not be echoed back)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return f"an integer of about {int(value.bit_length() * 0.30103)} digits"
    text = repr(value) if not isinstance(value, (list, dict, tuple)) or len(value) < 20 else type(value).__name__
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


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
        if isinstance(value, str) and len(value) <= 100:  # int() of a long digit string is quadratic
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{key}: expected int, got {_short(value)}")
    if inner is float:
        try:
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
            if isinstance(value, str):  # PyYAML reads "2e-4" (no dot) as a string
                return float(value)
        except ValueError:
            pass
        except OverflowError:  # an integer of hundreds of digits
            raise ConfigError(f"{key}: {_short(value)} is too large for a float") from None
        raise ConfigError(f"{key}: expected float, got {_short(value)}")
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
    except ConfigError as exc:
        if not where or str(exc).startswith(f"{where}."):  # the message already names the dotted key
            raise
        raise ConfigError(f"{where}: {exc}") from exc
    except TypeError as exc:
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
        if len(raw) > MAX_OVERRIDE_CHARS:  # checked before the YAML scanner walks it character by character
            raise ConfigError(f"override {key}: a value of {len(raw)} characters (at most {MAX_OVERRIDE_CHARS})")
        try:
            parsed = parse_yaml(raw, f"override {key}") if raw.strip() else ""
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


MAX_YAML_DEPTH = 100  # nesting levels; real configs use 3, and the composer recurses once per level
MAX_YAML_BYTES = 2**20  # a config is a few KB; this bounds the time and memory of a mistaken path


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, minus what makes a small file expensive or ambiguous.

    Aliases are refused (nested ones expand exponentially: a 600-byte file becomes gigabytes), nesting is
    bounded before the recursive composer reaches Python's stack limit, and a key given twice in one
    mapping (a second ``optim:`` section) is an error instead of silently replacing the first.
    """

    source = "config"

    def compose_node(self, parent, index):  # noqa: D102 (PyYAML hook)
        if self.check_event(yaml.events.AliasEvent):
            mark = self.peek_event().start_mark
            raise ConfigError(f"{self.source}: line {mark.line + 1}: YAML aliases (*name) are not accepted in "
                              f"configs; write the value out")
        self._depth = getattr(self, "_depth", 0) + 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                mark = self.peek_event().start_mark
                raise ConfigError(f"{self.source}: line {mark.line + 1}: nested deeper than {MAX_YAML_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: D102 (PyYAML hook)
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: PyYAML's own error follows
                continue
            if duplicate:
                raise ConfigError(f"{self.source}: line {line}: key {key!r} given twice in one mapping (first on "
                                  f"line {seen[key]}); merge the two")
            seen[key] = line
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, source: str = "config") -> Any:
    """YAML text -> Python objects with :class:`_StrictLoader`'s limits; ConfigError naming ``source``."""
    loader = _StrictLoader(text)
    loader.source = source
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file holding a mapping; ConfigError naming the file otherwise."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such config file")
    if path.stat().st_size > MAX_YAML_BYTES:
        raise ConfigError(f"{path}: {path.stat().st_size} bytes is not a config file (at most "
                          f"{MAX_YAML_BYTES // 2**20} MiB)")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                          f"save the config as UTF-8") from None
    try:
        data = parse_yaml(text, str(path))
    except ConfigError:
        raise
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: an integer past Python's digit limit
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data
