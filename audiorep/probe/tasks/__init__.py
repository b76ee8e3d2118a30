"""Downstream tasks, one file each; importing this package registers every task file in it."""

import importlib as _importlib
import pkgutil as _pkgutil

from .base import TASKS, Meter, Task, align_frame_labels, build_task, register_task

for _info in _pkgutil.iter_modules(__path__):
    if _info.name != "base" and not _info.name.startswith("_"):
        _importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["Meter", "TASKS", "Task", "align_frame_labels", "build_task", "register_task"]
