"""Optional dependencies: imported on demand, with a one-line error that names the fix when they fail."""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import AudiorepError


class MissingDependencyError(AudiorepError, ImportError):
    """An optional package a feature needs is missing or does not load."""


# package -> (the extra that installs it, a note on why it may fail to load)
_EXTRAS = {
    "torchaudio": ("torchaudio", "its compiled extension must match the installed torch build"),
    "s3prl": ("reference", "it needs a torchaudio that loads"),
    "matplotlib": ("plot", ""),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` for ``feature``, or raise :class:`MissingDependencyError` in one line.

    Catches every import-time failure, not only ``ImportError``: a torchaudio built for another torch
    raises ``OSError`` (an undefined symbol) from inside its ``__init__``.
    """
    try:
        return importlib.import_module(module)
    except Exception as exc:  # noqa: BLE001 - any failure to import is the same user-facing problem
        top = module.split(".")[0]
        extra, why = _EXTRAS.get(top, (None, ""))
        import torch

        cause = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if len(cause) > 160:
            cause = cause[:157] + "..."
        fix = f'pip install "audiorep[{extra}]"' if extra else f"pip install {top}"
        if top in ("torchaudio", "s3prl") and not isinstance(exc, ModuleNotFoundError):
            fix = 'pip install "torch==2.11.0" "torchaudio==2.11.0" (a pair that loads together)'
        raise MissingDependencyError(
            f"{feature} needs {top}, which {'is not installed' if isinstance(exc, ModuleNotFoundError) else 'does not load'}"
            f" with torch {torch.__version__} ({type(exc).__name__}: {cause}){'; ' + why if why and not isinstance(exc, ModuleNotFoundError) else ''}. "
            f"Fix: {fix}"
        ) from exc


def available(module: str) -> bool:
    """True when ``module`` imports cleanly (any failure counts as unavailable)."""
    try:
        importlib.import_module(module)
    except Exception:  # noqa: BLE001
        return False
    return True
