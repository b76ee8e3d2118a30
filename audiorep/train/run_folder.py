"""What a run may do with its folder before it trains: clean up killed writes, resume, or refuse to mix runs.

The caller holds the folder's run lock (:func:`audiorep.locking.lock_run_folder`) first, so the checks here
see the folder as no other process will change it.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Sequence

from ..errors import ConfigError
from ..fileio import remove_stale_temps
from .checkpoint import CheckpointManager
from .distributed import DistContext, barrier


def prepare_run_folder(run_dir: Path, ckpts: CheckpointManager, ctx: DistContext, *, resume: bool,
                       overwrite: bool, outputs: Sequence[str] = (), temp_folders: Sequence[str] = ()) -> None:
    """Apply the resume/overwrite rule to ``run_dir`` (every rank calls this; only rank 0 changes files).

    - Temp files of writes killed mid-way are removed from the folder, its checkpoints and ``temp_folders``.
    - ``resume`` needs a checkpoint to resume from; a folder without one is refused (not a silent restart).
    - Without ``resume``, a folder that holds checkpoints is refused unless ``overwrite``; then the
      checkpoints and the run's own ``outputs`` (file names inside ``run_dir``) are deleted, nothing else.
    Every rank raises the same error, so none of them waits at a barrier for a rank that stopped.
    """
    if ctx.is_main:
        for folder in (run_dir, ckpts.directory, *(run_dir / f for f in temp_folders)):
            remove_stale_temps(folder)  # writes killed mid-way; the run lock makes this process the only writer
    held = bool(ckpts.list())
    if resume and not held:
        raise ConfigError(f"{run_dir}: --resume, but the folder holds no checkpoint to resume from; "
                          "drop --resume to start a new run there")
    if held and not resume:
        if not overwrite:
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to start "
                              "over, or another --out")
        barrier(ctx)  # every rank has seen the old run before rank 0 deletes it
        if ctx.is_main:
            shutil.rmtree(ckpts.directory)
            for name in outputs:
                (run_dir / name).unlink(missing_ok=True)
