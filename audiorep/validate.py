"""Field checks for config dataclasses: the right type and a sane range, or one ConfigError naming the field.

Configs arrive from YAML, from ``config.json`` files and from s3prl checkpoints, i.e. from files anyone
can edit. A string where a number belongs must fail where the file is parsed, not as a TypeError deep in
a forward pass; a size of 1e9 must fail before it allocates or loops for hours.
"""

from __future__ import annotations

import math
from typing import Any, Iterable

from .errors import ConfigError


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_int(owner: str, name: str, value: Any, low: int, high: int, optional: bool = False) -> None:
    """``value`` is an int (not a bool, not a string) in ``[low, high]`` (or None when ``optional``)."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name} must be an integer, got {_show(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{owner}.{name} must lie in [{low}, {high}], got {value}")


def check_float(owner: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                optional: bool = False, low_open: bool = False, high_open: bool = False) -> None:
    """``value`` is a finite real number (int or float, not a bool or string) in the given range."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{owner}.{name} must be a number, got {_show(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{owner}.{name} must be finite, got {value}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        lo, hi = "(" if low_open else "[", ")" if high_open else "]"
        raise ConfigError(f"{owner}.{name} must lie in {lo}{low:g}, {high:g}{hi}, got {value}")


def check_bool(owner: str, name: str, value: Any) -> None:
    """``value`` is True or False (not 0/1, not "true")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be true or false, got {_show(value)}")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> None:
    """``value`` is one of the strings ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{owner}.{name} must be one of {', '.join(choices)}; got {_show(value)}")
