"""What every audiorep upstream shares: its output type, and saving/loading as config.json + model.safetensors."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..audio import WaveformBatch, batch_waveforms
from ..errors import AudioError, CheckpointError
from ..features import FeatureConfig, FeatureExtractor
from ..fileio import atomic_write_bytes
from .card import CARD_NAME, found_results, render_card, still_generated

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
    # config fields that make a model of this family small enough for the registry's contract test (seconds
    # on a CPU); the family's default config is the published one
    tiny_config: ClassVar[dict[str, Any]] = {}

    def save_pretrained(self, directory: str | os.PathLike, extra: dict[str, nn.Module] | None = None,
                        training: dict[str, Any] | None = None, repo_id: str | None = None) -> Path:
        """Write ``config.json`` + ``model.safetensors`` + a model card ``README.md`` into ``directory``, atomically.

        ``extra`` modules (e.g. the pretraining head) are stored under their key as a prefix; ``audiorep.load``
        ignores them, so the folder stays loadable as a plain upstream. ``training`` (e.g. data, steps) goes
        into the card with any results found beside the folder (:mod:`audiorep.models.card`); a README.md
        that audiorep did not write is left as it is.
        """
        from safetensors.torch import save

        from ..ownership import claim_new, owned_names
        from ..version import __version__

        directory = Path(directory)
        # a folder audiorep did not write (a transformers model) keeps its config.json and weights
        claim_new(directory, [WEIGHTS_NAME, CONFIG_NAME], replace=True, flag="")
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
        card_path = directory / CARD_NAME
        if not card_path.exists() or (CARD_NAME in owned_names(directory) and still_generated(card_path)):
            claim_new(directory, [CARD_NAME], replace=True, flag="")
            card = render_card(self.architecture, meta["model"], meta["features"],
                               sum(p.numel() for p in self.parameters()), training, found_results(directory), repo_id)
            atomic_write_bytes(directory / CARD_NAME, card.encode())
        return directory

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


def declared_shapes(build: Callable[[], nn.Module]) -> dict[str, tuple[int, ...]]:
    """The state-dict shapes of the module ``build()`` makes, built on the meta device: nothing is allocated.

    A config can declare a model far larger than its weights file (a hidden size of 16384 over a few kB of
    tensors); comparing these shapes with the file's before building the real module turns that into an
    error instead of gigabytes of freshly initialised parameters.
    """
    with torch.device("meta"):
        module = build()
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_state_fits(own: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], source: str,
                     ignore_prefixes: tuple[str, ...] = ()) -> None:
    """CheckpointError unless ``found`` (name -> shape, from the file) has exactly the keys and shapes of ``own``."""
    found = {k: v for k, v in found.items() if not k.startswith(ignore_prefixes)}
    missing = sorted(set(own) - set(found))
    unexpected = sorted(set(found) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            f"{source}: weights do not fit this architecture; missing {missing[:6]}"
            f"{'...' if len(missing) > 6 else ''}, unexpected {unexpected[:6]}{'...' if len(unexpected) > 6 else ''}"
        )
    bad = [f"{k}: file {tuple(found[k])} vs model {tuple(own[k])}" for k in own if tuple(found[k]) != tuple(own[k])]
    if bad:
        raise CheckpointError(f"{source}: weight shapes do not match the config: {bad[:4]}")


def weights_file_shapes(path: str | os.PathLike) -> dict[str, tuple[int, ...]]:
    """name -> shape of every tensor in a safetensors file, read from its header alone (no tensor is loaded)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as exc:  # SafetensorError, OSError, ...
        raise CheckpointError(f"{path}: cannot read weights (truncated or corrupt file?): {exc}") from exc


def load_state_strict(model: nn.Module, state: dict[str, torch.Tensor], source: str,
                      ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load weights requiring every model key present with the right shape; name what is off."""
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    check_state_fits(own, {k: tuple(v.shape) for k, v in state.items()}, source)
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


class PretrainableEncoder:
    """What masked acoustic pretraining (:mod:`audiorep.pretrain`) needs of an encoder family, with defaults.

    A :class:`PretrainedModel` subclass that also inherits this (and registers its architecture) can be
    pretrained with ``model.architecture=<its name>``: pretraining builds it as ``cls(config, feature_config)``
    from ``cls.config_class``, runs :meth:`encode` on altered feature frames and trains
    :meth:`reconstruction_head` to rebuild the clean frames.
    """

    def encode(self, feats: torch.Tensor, lengths: torch.Tensor | None = None) -> EncoderOutput:
        """Feature frames (B, T, D) with valid counts (B,) -> every hidden state; zero past each length."""
        raise NotImplementedError(f"{type(self).__name__}.encode")

    @property
    def target_dim(self) -> int:
        """Size of the frames the head rebuilds; default: the input feature size."""
        return self.feature_config.dim  # type: ignore[attr-defined]

    def reconstruction_head(self) -> nn.Module:
        """Hidden states (..., H) -> frames (..., target_dim). Default: Linear H->H, GELU, LayerNorm, Linear."""
        H = self.hidden_size  # type: ignore[attr-defined]
        return nn.Sequential(nn.Linear(H, H), nn.GELU(), nn.LayerNorm(H), nn.Linear(H, self.target_dim))

    def packs(self, x: torch.Tensor) -> bool:
        """Whether a padded batch runs packed (valid frames only, :meth:`encode_packed`); default never."""
        return False

    def encode_packed(self, feats: torch.Tensor, lens: list[int], positions: torch.Tensor) -> list[torch.Tensor]:
        """Packed frames (N, D) -> every hidden state (N, H); only called when :meth:`packs` says so."""
        raise NotImplementedError(f"{type(self).__name__}.encode_packed")

    def attention_probabilities(self, hidden_states: tuple[torch.Tensor, ...], lengths: torch.Tensor
                                ) -> list[torch.Tensor]:
        """Per layer, its attention (B, heads, T, T) given its input ``hidden_states[i]`` (the held-out check
        reports where the model looks); default: none (an encoder without attention)."""
        return []

    def s3prl_exportable(self) -> bool:
        """Whether the final model is also written as an s3prl checkpoint; default no."""
        return False
