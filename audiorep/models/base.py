"""What every audiorep upstream shares: its output type, and saving/loading as config.json + model.safetensors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from ..audio import WaveformBatch, batch_waveforms
from ..errors import AudioError, CheckpointError
from ..features import FeatureConfig, FeatureExtractor
from ..fileio import atomic_write_bytes
from .card import CARD_NAME, found_results, is_own_card, render_card

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
FORMAT_VERSION = 1


@dataclass
class EncoderOutput:
    """What an upstream returns; frames past ``lengths`` are zero in every hidden state."""

    hidden_states: tuple[torch.Tensor, ...]  # num_layers + 1 tensors (B, T, H); [0] = input embedding output
    last_hidden_state: torch.Tensor  # (B, T, H)
    lengths: torch.Tensor  # (B,) valid frames per utterance


class WaveformUpstream(nn.Module):
    """An upstream that owns its front end (``self.features``): waveforms in, features at its own rate."""

    features: FeatureExtractor

    @property
    def feature_config(self) -> FeatureConfig:
        return self.features.config

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    def extract_features(self, wavs: WaveformBatch, wav_lens=None, sample_rate: int | None = None
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Waveforms -> (features (B, T, D), frame lengths (B,)) with this upstream's front end."""
        if sample_rate is not None and sample_rate != self.sample_rate:
            raise AudioError(
                f"sample_rate {sample_rate} does not match the model's {self.sample_rate} Hz; "
                f"resample first (audiorep.read_audio(path, {self.sample_rate}))"
            )
        wavs, lens = batch_waveforms(wavs, wav_lens)
        device = self.features.window.device  # a buffer: follows the module across .to()
        return self.features(wavs.to(device), lens.to(device))


class PretrainedModel(WaveformUpstream):
    """Base for saveable upstreams with a dataclass ``config`` and a ``feature_config``."""

    architecture: ClassVar[str]
    config_class: ClassVar[type]

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, nn.Module] | None = None,
                        training: dict[str, Any] | None = None, repo_id: str | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + a model card ``README.md`` into ``directory``, atomically.

        ``extra`` modules (e.g. the pretraining head) are stored under their key as a prefix; ``audiorep.load``
        ignores them, so the folder stays loadable as a plain upstream. ``training`` (e.g. data, steps) goes
        into the card with any results found beside the folder (:mod:`audiorep.models.card`); a README.md
        that audiorep did not write is left as it is.
        """
        from safetensors.torch import save

        from .. import __version__

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        for prefix, module in (extra or {}).items():
            state.update({f"{prefix}.{k}": v.detach().contiguous().cpu() for k, v in module.state_dict().items()})
        meta = {
            "format": "audiorep",
            "format_version": FORMAT_VERSION,
            "audiorep_version": __version__,
            "architecture": self.architecture,
            "model": self.config.to_dict(),
            "features": self.feature_config.to_dict(),
            "extra_modules": sorted(extra or {}),
        }
        atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
        atomic_write_bytes(directory / CONFIG_NAME, (json.dumps(meta, indent=2) + "\n").encode())
        if is_own_card(directory / CARD_NAME):
            card = render_card(self.architecture, meta["model"], meta["features"],
                               sum(p.numel() for p in self.parameters()), training, found_results(directory), repo_id)
            atomic_write_bytes(directory / CARD_NAME, card.encode())
        return directory

    def push_to_hub(self, repo_id: str, *, revision: str | None = None, private: bool | None = None,
                    token: str | None = None, commit_message: str | None = None, create_pr: bool = False,
                    extra: dict[str, nn.Module] | None = None, replace_card: bool = False) -> str:
        """Publish this model on the Hugging Face hub as ``repo_id`` (created if missing; ``private`` applies then).

        Writes :meth:`save_pretrained` into a temporary folder and uploads it as one commit
        (``HfApi.upload_folder``): config.json + model.safetensors, replacing those two files, leaving any
        other file in place; the model card README.md is uploaded only where the repository has none, unless
        ``replace_card``. ``token`` defaults to the hub's own (``HF_TOKEN``,
        ``hf auth login``); ``HF_ENDPOINT`` picks another hub. Returns the commit URL. Load it back with
        ``audiorep.load("hf-hub:" + repo_id)``.
        """
        from ..hub import push_folder

        return push_folder(self, repo_id, revision=revision, private=private, token=token,
                           commit_message=commit_message, create_pr=create_pr, extra=extra,
                           replace_card=replace_card)

    @classmethod
    def from_config_dict(cls, meta: dict[str, Any], source: str = "config") -> "PretrainedModel":
        """Build an untrained model from the dict stored in config.json."""
        if meta.get("architecture") != cls.architecture:
            raise CheckpointError(
                f"{source}: holds a {meta.get('architecture')!r} model, not {cls.architecture!r}"
            )
        return cls(cls.config_class.from_dict(meta["model"]), FeatureConfig.from_dict(meta["features"]))


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Parse a saved model's config.json, with errors that name the file."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: not an audiorep model folder (no {CONFIG_NAME})")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or meta.get("format") != "audiorep" or "model" not in meta or "features" not in meta:
        raise CheckpointError(f"{path}: not an audiorep config (needs format, architecture, model, features)")
    version = meta.get("format_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise CheckpointError(f"{path}: format_version must be an integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{path}: written by a newer audiorep (format {version}); upgrade")
    return meta


def read_weights(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Load model.safetensors, turning a truncated or corrupt file into a CheckpointError naming it."""
    from safetensors.torch import load_file

    path = Path(directory) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{directory}: no {WEIGHTS_NAME}")
    try:
        return load_file(str(path))
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt file?): {exc}") from exc


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                      ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load weights requiring every model key present with the right shape; name what is off."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit this architecture; missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    bad = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
           for k in own if tuple(state[k].shape) != tuple(own[k].shape)]
    if bad:
        raise CheckpointError(f"{source}: weight shapes do not match the config: {bad[:4]}")
    check_finite_weights(state, source)
    model.load_state_dict(state, strict=True)


def check_finite_weights(state: dict[str, Any], source: str) -> None:
    """CheckpointError naming ``source`` and the first tensor holding NaN or inf.

    Such weights load without complaint and turn every hidden state into NaN: a diverged run or a
    corrupt file must be refused where it is read, not discovered in the features.
    """
    for name, value in state.items():
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
            n_bad = int((~torch.isfinite(value)).sum())
            raise CheckpointError(f"{source}: tensor {name!r} holds {n_bad} NaN or infinite value(s); the file is "
                                  "corrupt or was saved from a diverged run")
