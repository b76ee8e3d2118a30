"""What a run may do with its folder before it trains: clean up killed writes, resume, or refuse to mix runs.

The caller holds the folder's run lock (:func:`audiorep.locking.lock_run_folder`) first, so the checks here
see the folder as no other process will change it. Which files the run may replace or delete follows
:mod:`audiorep.ownership`: only those audiorep recorded as written there.

Resuming (``--resume``) continues the run the folder holds. Settings that only say how long and how
visibly it runs may change (the caller's ``may_change``: step or epoch budget, patience, log and
checkpoint cadence, device, progress bars); any other change (model, optimiser, data, seed) is an error
naming the setting, since the checkpoint's weights, optimiser state and data position belong to the old
ones. The config file the run writes afterwards is the one that runs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import yaml

from ..errors import ConfigError
from ..fileio import remove_stale_temps
from ..ownership import check_writable, claim, owned_names, remove_owned
from .checkpoint import CheckpointManager
from .distributed import DistContext, barrier


def prepare_run_folder(run_dir: Path, ckpts: CheckpointManager, ctx: DistContext, *, resume: bool,
                       overwrite: bool, outputs: Sequence[str] = (), temp_folders: Sequence[str] = (),
                       folder_files: Mapping[str, Sequence[str]] | None = None, config_file: str | None = None,
                       config: Mapping[str, Any] | None = None, may_change: Collection[str] = ()) -> None:
    """Apply the resume/overwrite rule to ``run_dir`` (every rank calls this; only rank 0 changes files).

    - Temp files of writes killed mid-way are removed from the folder, its checkpoints and ``temp_folders``.
    - ``resume`` needs a checkpoint to resume from; a folder without one is refused (not a silent restart),
      and the saved ``config_file`` may differ from ``config`` only in ``may_change`` keys.
    - Without ``resume``, a folder that holds checkpoints is refused unless ``overwrite``; then the
      checkpoints and the run's own ``outputs`` are deleted, and only those audiorep wrote.
    - Every name the run writes (``outputs``, the subfolders ``temp_folders``, ``folder_files`` inside
      them) must be new or audiorep's own: a user's file of that name is refused before any work.
    Every rank raises the same error, so none of them waits at a barrier for a rank that stopped.
    """
    folder_files = dict(folder_files or {})
    subdirs = [ckpts.directory.name, *temp_folders]
    if ctx.is_main:
        for folder in (run_dir, ckpts.directory, *(run_dir / f for f in temp_folders)):
            remove_stale_temps(folder)  # writes killed mid-way; the run lock makes this process the only writer
    held = bool(ckpts.list())
    if resume and not held:
        raise ConfigError(f"{run_dir}: --resume, but the folder holds no checkpoint to resume from; "
                          "drop --resume to start a new run there")
    if resume and config_file is not None and config is not None:
        check_resume_config(run_dir / config_file, dict(config), may_change)
    if held and not resume:
        if not overwrite:
            raise ConfigError(f"{run_dir} already holds a run; pass --resume to continue it, --overwrite to start "
                              "over, or another --out")
        foreign = [p.name for _, p in ckpts.list() if p.name not in owned_names(ckpts.directory)]
        if foreign:
            raise ConfigError(f"{ckpts.directory}: {', '.join(foreign[:3])} not written by this audiorep (not "
                              "listed in its file list); --overwrite deletes only what audiorep wrote, so move "
                              "them away yourself")
        barrier(ctx)  # every rank has seen the old run before rank 0 deletes it
        if ctx.is_main:
            remove_owned(ckpts.directory)
            if ckpts.directory.is_dir() and not any(ckpts.directory.iterdir()):
                ckpts.directory.rmdir()
            remove_owned(run_dir, outputs)
    check_writable(run_dir, outputs, replace=True, dirs=subdirs)
    for sub, names in folder_files.items():
        check_writable(run_dir / sub, names, replace=True)
    if ctx.is_main:
        claim(run_dir, [*outputs, *subdirs])


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def check_resume_config(saved_path: Path, config: dict[str, Any], may_change: Collection[str]) -> None:
    """ConfigError naming every setting that differs between the run's saved config and ``config``,
    except those in ``may_change`` (dotted keys; ``train`` covers ``train.*``)."""
    try:
        text = saved_path.read_text(encoding="utf-8")
        # JSON through json: YAML 1.1 reads a JSON float such as 5e-05 as a string
        saved = json.loads(text) if saved_path.suffix == ".json" else yaml.safe_load(text)
    except FileNotFoundError:
        return  # a run killed before it wrote its config: nothing to compare with
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise ConfigError(f"{saved_path}: unreadable ({type(exc).__name__}); cannot tell what the run to resume "
                          "used; start over with --overwrite") from None
    if not isinstance(saved, Mapping):
        return
    old, new = _flatten(saved), _flatten(config)

    def allowed(key: str) -> bool:
        return any(key == m or key.startswith(m + ".") for m in may_change)

    changed = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k) and not allowed(k)]
    if changed:
        diffs = ", ".join(f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed[:4])
        more = f" (+{len(changed) - 4} more)" if len(changed) > 4 else ""
        raise ConfigError(f"--resume of {saved_path.parent} with changed settings: {diffs}{more}; a resumed run "
                          f"keeps its model, optimiser and data settings (only {', '.join(sorted(may_change))} may "
                          "change); start a new run with --overwrite or another --out")
