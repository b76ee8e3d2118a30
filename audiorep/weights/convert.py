"""A checkpoint file -> an audiorep model folder (config.json + model.safetensors), never at a user's expense."""

from __future__ import annotations

from pathlib import Path

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_directory
from ..models.base import CONFIG_NAME, WEIGHTS_NAME
from ..ownership import MARKER, check_output_dir, check_writable, owned_names
from .s3prl import load_s3prl_checkpoint


def check_output_folder(target: Path, overwrite: bool = False) -> None:
    """Refuse (ConfigError) an output folder that writing a model into could cost the user something.

    The rule of :mod:`audiorep.ownership`: a new or empty folder, or one whose marker says audiorep wrote
    it (config.json and model.safetensors replaced only with ``overwrite``, and only if listed). Any other
    non-empty folder (a transformers model, a project folder) is refused, ``overwrite`` or not.
    """
    check_output_dir(target, flag="")
    if target.is_dir() and any(target.iterdir()) and not owned_names(target):
        raise ConfigError(f"{target}: not empty and not an audiorep model folder (no {MARKER} listing what "
                          "audiorep wrote); audiorep only writes into a new, an empty or its own model folder")
    if not overwrite and any((target / n).exists() for n in (CONFIG_NAME, WEIGHTS_NAME)):
        raise ConfigError(f"{target}: already holds an audiorep model; pass --overwrite to replace its "
                          f"{CONFIG_NAME} and {WEIGHTS_NAME}, or choose another folder")
    check_writable(target, [CONFIG_NAME, WEIGHTS_NAME], replace=overwrite, flag="")


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
