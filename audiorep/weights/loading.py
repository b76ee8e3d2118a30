"""``audiorep.load``: a registered name, a saved folder or an s3prl checkpoint -> a ready upstream model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..models.logmel import LogMelUpstream, parse_logmel_name
from ..models.base import (CONFIG_NAME, WEIGHTS_NAME, PretrainedModel, check_state_fits, declared_shapes,
                          load_state_strict, read_config, read_weights, weights_file_shapes)
from ..registry import get_architecture, get_spec, list_architectures, list_models

if TYPE_CHECKING:
    from ..models.foreign import ForeignUpstream


def load(name_or_path: str | os.PathLike, pretrained: bool = True, device: str | torch.device | None = None,
         progress: bool = True) -> PretrainedModel | ForeignUpstream:
    """Load an upstream encoder in eval mode.

    - a registered name (``audiorep.list_models()``): pretrained weights from the cache, downloaded and
      converted on first use; ``pretrained=False`` builds the architecture with random weights;
    - a folder written by ``model.save_pretrained``;
    - an s3prl ``states-*.ckpt`` file (read without executing pickled code);
    - ``"hf-hub:org/name"`` (``@revision`` optional): an audiorep repository on the Hugging Face hub (config.json +
      model.safetensors, as :func:`audiorep.weights.hub.push_to_hub` writes it), through the
      hub's cache; ``HF_HUB_OFFLINE``, ``HF_ENDPOINT`` and ``HF_TOKEN`` apply;
    - ``"hf:<repo id or folder>"``: a transformers speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio);
      ``"torchaudio:<bundle>"``: a ``torchaudio.pipelines`` bundle (e.g. ``WAV2VEC2_BASE``). Both are wrapped
      behind the same output contract (:mod:`audiorep.models.foreign`); ``pretrained=False`` builds them from
      their config with random weights.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if isinstance(name_or_path, str) and name_or_path.startswith("hf-hub:"):
        from .hub import HUB_PREFIX, hub_snapshot

        folder = hub_snapshot(name_or_path[len(HUB_PREFIX):], weights=pretrained, progress=progress)
        model = load_folder(folder) if pretrained else _build(read_config(folder), folder)
    elif isinstance(name_or_path, str) and name_or_path.startswith(("hf:", "torchaudio:")):
        from ..models.foreign import load_foreign

        model = load_foreign(name_or_path, pretrained=pretrained)
    elif path.is_dir():
        model = load_folder(path)
    elif path.is_file():
        from .s3prl import load_s3prl_checkpoint

        model = load_s3prl_checkpoint(path)
    elif isinstance(name_or_path, str) and name_or_path in list_models():
        spec = get_spec(name_or_path)
        if pretrained:
            from .hub import fetch_pretrained

            model = load_folder(fetch_pretrained(spec, progress=progress))
        else:
            model = get_architecture(spec.architecture)(spec.config(), spec.features())
    else:
        raise ConfigError(
            f"{name_or_path}: neither a registered model ({', '.join(list_models())}) nor an existing file or folder "
            "(audiorep repositories on the hub: hf-hub:org/name; transformers and torchaudio encoders: "
            "hf:<repo id or folder>, torchaudio:<bundle name>)"
        )
    if device is not None:
        model = model.to(device)
    return model.eval()


def load_folder(directory: str | os.PathLike) -> PretrainedModel:
    """Load a folder holding config.json + model.safetensors (extra modules such as a pretraining head are skipped)."""
    meta = read_config(directory)
    extras = tuple(f"{p}." for p in meta.get("extra_modules", []))
    weights = str(Path(directory) / WEIGHTS_NAME)
    if not Path(weights).is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
    # the sizes config.json declares, against the file's header, before a parameter is allocated
    check_state_fits(declared_shapes(lambda: _build(meta, directory)), weights_file_shapes(weights),
                     f"{weights} (against {Path(directory) / CONFIG_NAME})", ignore_prefixes=extras)
    model = _build(meta, directory)
    load_state_strict(model, read_weights(directory), weights, ignore_prefixes=extras)
    return model


def _build(meta: dict, directory: str | os.PathLike) -> PretrainedModel:
    """The untrained model a saved config.json describes."""
    arch = meta.get("architecture")
    if arch not in list_architectures():
        raise CheckpointError(f"{directory}: unknown architecture {arch!r}; known: {list_architectures()}")
    try:
        return get_architecture(arch).from_config_dict(meta, str(directory))
    except ConfigError as exc:
        raise CheckpointError(f"{directory}/config.json: {exc}") from exc


def load_upstream(name_or_path: str | os.PathLike, device: str | torch.device | None = None,
                  pretrained: bool = True) -> nn.Module:
    """``"logmel"`` -> :class:`LogMelUpstream`, ``"logmel-ctxK"`` -> the same with K frames of context each
    side; anything else goes to :func:`audiorep.load`."""
    context = parse_logmel_name(os.fspath(name_or_path))
    if context is not None:
        model: nn.Module = LogMelUpstream(context=context)
        return model.to(device) if device is not None else model
    return load(name_or_path, pretrained=pretrained, device=device)
