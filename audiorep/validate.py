"""Field checks for config dataclasses: the right type and a sane range, or one ConfigError naming the field.

Configs arrive from YAML, from ``config.json`` files and from s3prl checkpoints, i.e. from files anyone
can edit. A string where a number belongs must fail where the file is parsed, not as a TypeError deep in
a forward pass; a size of 1e9 must fail before it allocates or loops for hours.
"""

from __future__ import annotations

import math
import os
from typing import Any, Iterable, Mapping, NamedTuple

from .errors import ConfigError


def _show(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _key(owner: str, name: str) -> str:
    return f"{owner}.{name}" if owner else name


def _unit(unit: str, optional: bool) -> str:
    return (f" {unit}" if unit else "") + (" or null" if optional else "")


def check_int(owner: str, name: str, value: Any, low: int, high: int, optional: bool = False,
              unit: str = "") -> None:
    """``value`` is an int (not a bool, not a string) in ``[low, high]`` (or None when ``optional``).

    ``unit`` (``"steps"``, ``"utterances"``) goes into the message, so the user knows what the number counts.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{_key(owner, name)} must be an integer{_unit(unit, optional)}, got {_show(value)}")
    if not low <= value <= high:
        raise ConfigError(f"{_key(owner, name)} must lie in [{low}, {high}]{_unit(unit, optional)}, got {value}")


def check_float(owner: str, name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                optional: bool = False, low_open: bool = False, high_open: bool = False, unit: str = "") -> None:
    """``value`` is a finite real number (int or float, not a bool or string) in the given range."""
    if value is None and optional:
        return
    lo, hi = "(" if low_open else "[", ")" if high_open else "]"
    where = f"{lo}{low:g}, {high:g}{hi}{_unit(unit, optional)}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{_key(owner, name)} must be a number in {where}, got {_show(value)}")
    if not math.isfinite(value):
        raise ConfigError(f"{_key(owner, name)} must be a finite number in {where}, got {value}")
    if value < low or value > high or (low_open and value == low) or (high_open and value == high):
        raise ConfigError(f"{_key(owner, name)} must lie in {where}, got {value}")


class Range(NamedTuple):
    """Declared bounds of one numeric config field (see :func:`check_ranges`)."""

    low: float
    high: float
    unit: str = ""  # what the number counts, shown in the message
    integer: bool = False
    optional: bool = False  # None allowed
    low_open: bool = False
    high_open: bool = False


def ints(low: int, high: int, unit: str = "", optional: bool = False) -> Range:
    """An integer field in ``[low, high]``."""
    return Range(low, high, unit, integer=True, optional=optional)


def reals(low: float, high: float, unit: str = "", optional: bool = False, low_open: bool = False,
          high_open: bool = False) -> Range:
    """A finite real field in the given range."""
    return Range(low, high, unit, optional=optional, low_open=low_open, high_open=high_open)


# common bounds, shared by every config so that "a seed" or "a learning rate" means the same everywhere
SEED = ints(0, 2**63 - 1, "(a seed: torch and the masking keys take a non-negative 64-bit int)")
LR = reals(0.0, 10.0, "(a learning rate)", low_open=True)
PROB = reals(0.0, 1.0, "(a probability)")
DROPOUT = reals(0.0, 1.0, "(a dropout probability)", high_open=True)
WEIGHT_DECAY = reals(0.0, 10.0, "(a weight decay factor)")
GRAD_CLIP = reals(0.0, 1e6, "(a max gradient norm; 0 turns clipping off)")
COUNT = ints(1, 10**9)
MAX_NAME_CHARS = 200  # a run name becomes a folder name: file systems allow 255 bytes per component
MAX_WORKERS = max(64, 4 * (os.cpu_count() or 1))  # more data workers than this only fills memory


def check_ranges(obj: Any, owner: str, ranges: Mapping[str, Range]) -> None:
    """Check the fields of config dataclass ``obj`` against their declared :class:`Range`.

    The one mechanism every config's ``__post_init__`` calls, so a value built in Python is checked as
    strictly as one read from YAML: NaN, inf and out-of-range numbers fail with the key, the value and the
    allowed range with its unit.
    """
    for name, r in ranges.items():
        value = getattr(obj, name)
        if r.integer:
            check_int(owner, name, value, int(r.low), int(r.high), r.optional, r.unit)
        else:
            check_float(owner, name, value, r.low, r.high, r.optional, r.low_open, r.high_open, r.unit)


def check_name(owner: str, name: str, value: Any, max_chars: int = MAX_NAME_CHARS) -> None:
    """A short non-empty string (a run name that becomes a folder name)."""
    if not isinstance(value, str) or not value or len(value) > max_chars:
        shown = _show(value) if not isinstance(value, str) else f"a string of {len(value)} characters"
        raise ConfigError(f"{_key(owner, name)} must be a non-empty string of at most {max_chars} characters, "
                          f"got {shown}")


def check_bool(owner: str, name: str, value: Any) -> None:
    """``value`` is True or False (not 0/1, not "true")."""
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be true or false, got {_show(value)}")


def check_choice(owner: str, name: str, value: Any, choices: Iterable[str]) -> None:
    """``value`` is one of the strings ``choices``."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{owner}.{name} must be one of {', '.join(choices)}; got {_show(value)}")
