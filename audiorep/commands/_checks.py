"""Argument checks the commands run before any work: a bad flag must not cost a model load or a corpus pass."""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError


def check_device(name: str | None, flag: str = "--device") -> None:
    """ConfigError unless ``name`` is None or a device this machine has (cpu, cuda[:N], mps)."""
    import torch

    if name is None:
        return
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise ConfigError(f"{flag} {name!r}: not a device name (cpu, cuda, cuda:N or mps)") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"{flag} {name}: CUDA is not available on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"{flag} {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    elif dev.type == "mps":
        if not torch.backends.mps.is_available():
            raise ConfigError(f"{flag} {name}: MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise ConfigError(f"{flag} {name}: unsupported device type {dev.type!r} (cpu, cuda, cuda:N or mps)")


def check_output_file(path: Path, flag: str = "--out") -> None:
    """ConfigError unless a file can be written at ``path``: not a folder, inside a writable folder.

    Writes and removes a probe file when the folder exists, so permissions, read-only mounts and ACLs are
    all tested the way the real write will meet them.
    """
    from ..fileio import make_temp_file

    if path.is_dir():
        raise ConfigError(f"{flag} {path}: a folder; give a file path such as {path / 'features.safetensors'}")
    parent = path.parent
    existing = next((p for p in (parent, *parent.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        raise ConfigError(f"{flag} {path}: {existing} is not a folder")
    if existing != parent:
        if not os.access(existing, os.W_OK | os.X_OK):
            raise ConfigError(f"{flag} {path}: cannot create folders in {existing} (permission denied)")
        return
    try:
        fd, probe = make_temp_file(parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise ConfigError(f"{flag} {path}: cannot write in {parent} ({exc.strerror})") from None
    os.close(fd)
    os.unlink(probe)
