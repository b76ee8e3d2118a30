"""Where audiorep keeps what it fetched (``AUDIOREP_HOME``) and whether it may fetch at all (offline mode)."""

from __future__ import annotations

import os
from pathlib import Path

from ..network import offline_reason  # noqa: F401 - where audiorep's loaders have always found it
from ..registry import ModelSpec


def cache_dir() -> Path:
    """``$AUDIOREP_HOME`` or ``~/.cache/audiorep``."""
    return Path(os.environ.get("AUDIOREP_HOME", Path.home() / ".cache" / "audiorep")).expanduser()


def model_dir(name: str) -> Path:
    """Folder holding the converted copy of a named model."""
    return cache_dir() / "models" / name


def how_to_proceed(spec: ModelSpec) -> str:
    return (
        f"Ways on: audiorep.load({spec.name!r}, pretrained=False) for random weights "
        "(on the command line: audiorep extract --no-pretrained, or a folder or checkpoint path in place of "
        "the name); "
        f"audiorep.load('path/to/states-*.ckpt') or a folder written by save_pretrained; "
        f"put a converted model at {model_dir(spec.name)} (audiorep convert CKPT {model_dir(spec.name)}); "
        "or pretrain your own with recipes/pretrain_aalbert.sh."
    )


# A whole download gets this long (AUDIOREP_DOWNLOAD_TIMEOUT overrides it); a server silent for STALL_S
# seconds is given up on sooner. The published checkpoints are 100-350 MB.
