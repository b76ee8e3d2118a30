"""Training checkpoints: atomic, keep-last-N, full state, readable with ``weights_only=True``.

A checkpoint is a ``torch.save`` dict of tensors and plain Python values only (RNG states are converted
to lists), so resuming never needs to unpickle arbitrary objects. Files are written to a temporary name
and renamed, so a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import io
import logging
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..errors import CheckpointError
from ..fileio import atomic_write_bytes
from ..ownership import claim, owned_names, remove_owned

_NAME = re.compile(r"^step-(\d+)\.pt$")
log = logging.getLogger(__name__)


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
