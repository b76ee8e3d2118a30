"""A checkpoint file -> an audiorep model folder (config.json + model.safetensors), never at a user's expense."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_directory
from ..models.base import CONFIG_NAME, WEIGHTS_NAME
from .s3prl import load_s3prl_checkpoint


def check_output_folder(target: Path, overwrite: bool = False) -> None:
    """Refuse (ConfigError) an output folder that writing a model into could cost the user something.

    Accepted: a new path, an empty folder, or with ``overwrite`` a model folder audiorep wrote (it holds
    config.json or model.safetensors). Refused: a file, and any other non-empty folder, even with
    ``overwrite``: audiorep never empties a folder it did not write.
    """
    if not target.exists():
        if target.is_symlink():
            raise ConfigError(f"{target}: a broken symbolic link; choose another output folder")
        return
    if not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder; give a new or empty folder for the model")
    if not any(target.iterdir()):
        return
    if not ((target / CONFIG_NAME).is_file() or (target / WEIGHTS_NAME).is_file()):
        raise ConfigError(f"{target}: not empty and not an audiorep model folder (no {CONFIG_NAME} or "
                          f"{WEIGHTS_NAME}); audiorep only writes into a new, an empty or its own model folder")
    if not overwrite:
        raise ConfigError(f"{target}: already holds an audiorep model; pass --overwrite to replace its "
                          f"{CONFIG_NAME} and {WEIGHTS_NAME}, or choose another folder")


def convert_to_folder(ckpt: Path, target: Path, source_format: str = "s3prl", overwrite: bool = False) -> Path:
    """Convert a checkpoint into an audiorep model folder (``target``), checked by :func:`check_output_folder`.

    A new folder appears whole or not at all. Into an existing (empty, or with ``overwrite`` audiorep's
    own) folder only config.json and model.safetensors are written; any other file in it stays.
    """
    target = Path(target)
    if source_format != "s3prl":
        raise CheckpointError(f"{ckpt}: unknown source format {source_format!r}")
    check_output_folder(target, overwrite)  # before reading the checkpoint: a refusal costs nothing
    model, head = load_s3prl_checkpoint(ckpt, with_head=True)
    extra = {"head": head} if head is not None else None
    if target.is_dir():
        # config.json goes first: a write cut short leaves a folder that load() refuses as incomplete
        # (and --overwrite accepts again), never an old config beside new weights
        (target / CONFIG_NAME).unlink(missing_ok=True)
        model.save_pretrained(target, extra=extra)
    else:
        with atomic_directory(target) as staging:
            model.save_pretrained(staging, extra=extra)
    return target
