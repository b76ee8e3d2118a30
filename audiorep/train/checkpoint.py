"""Training checkpoints: atomic, keep-last-N, full state, readable with ``weights_only=True``.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only (RNG states are converted
to lists), so resuming never needs to unpickle arbitrary objects. Files are written to a temporary name
and renamed, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import logging
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_bytes
from ..ownership import claim, owned_names, remove_owned

_NAME = re.compile(r"^step-(\d+)\.pt$")
log = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def capture_rng() -> dict[str, Any]:
    """Every RNG state a training step touches, as plain values and tensors."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": [np_state[0], np_state[1].tolist(), int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    random.setstate(_lists_to_tuples(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], np.asarray(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _tuples_to_lists(x: Any) -> Any:
    return [_tuples_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _lists_to_tuples(x: Any) -> Any:
    return tuple(_lists_to_tuples(v) for v in x) if isinstance(x, (tuple, list)) else x


class CheckpointManager:
    """``step-XXXXXXXX.pt`` files in one folder: save atomically, keep the last N, find and load the latest."""

    def __init__(self, directory: str | os.PathLike, keep_last: int = 3):
        self.directory = Path(directory)
        self.keep_last = keep_last

    def path(self, step: int) -> Path:
        return self.directory / f"step-{step:08d}.pt"

    def list(self) -> list[tuple[int, Path]]:
        """(step, path) of every checkpoint, oldest first."""
        if not self.directory.is_dir():
            return []
        found = [(int(m.group(1)), p) for p in self.directory.iterdir() if (m := _NAME.match(p.name))]
        return sorted(found)

    def latest(self) -> Path | None:
        items = self.list()
        return items[-1][1] if items else None

    def save(self, state: dict[str, Any], step: int) -> Path:
        """Write ``state`` as step ``step`` (temp file + rename), then delete all but the newest ``keep_last``
        of the checkpoints this manager wrote (a file it did not write is never deleted)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        torch.save(state, buf)
        path = self.path(step)
        claim(self.directory, [path.name])  # recorded first: only files on that list are ever deleted
        atomic_write_bytes(path, buf.getvalue())
        if self.keep_last > 0:
            ours = owned_names(self.directory)
            remove_owned(self.directory, [old.name for _, old in self.list()[: -self.keep_last]
                                          if old.name in ours])
        return path

    def load_latest(self, map_location: str | torch.device = "cpu") -> tuple[Path, dict[str, Any]] | None:
        """(path, state) of the newest checkpoint that reads; None when the folder holds none.

        A newer file that does not read (cut short by a crash, a full disk, a bad copy) is skipped with a
        warning and the one before it is used: resuming a few steps earlier beats not resuming at all.
        CheckpointError when no checkpoint reads.
        """
        items = self.list()
        if not items:
            return None
        failures: list[CheckpointError] = []
        for _, path in reversed(items):
            try:
                return path, self.load(path, map_location)
            except CheckpointError as exc:
                log.warning("%s; trying the checkpoint before it", exc)
                failures.append(exc)
        raise CheckpointError(f"{self.directory}: none of its {len(items)} checkpoint(s) is readable; "
                              f"the newest: {failures[0]}")

    @staticmethod
    def load(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
        """Read a checkpoint without executing pickled code; CheckpointError naming the file when it is bad."""
        try:
            state = torch.load(path, map_location=map_location, weights_only=True)
        except Exception as exc:
            raise CheckpointError(f"{path}: cannot read training checkpoint (truncated or foreign?): {exc}") from exc
        if not isinstance(state, dict) or "step" not in state or "model" not in state:
            raise CheckpointError(f"{path}: not an audiorep training checkpoint (no 'step'/'model')")
        return state
