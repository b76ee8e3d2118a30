"""Fusion heads, one file each; importing this package registers every head file in it (see :mod:`.base`)."""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import HEADS, NEEDS, HeadSpec, register_head

for _info in _pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["HEADS", "NEEDS", "HeadSpec", "register_head"]
