"""The log-mel front end as an upstream with no encoder: the floors every probe table is measured against."""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..features import FeatureConfig, FeatureExtractor
from .base import EncoderOutput, WaveformUpstream

_NAME = re.compile(r"^(?:logmel|log-mel|fbank)(?:-ctx(\d+))?$")


def parse_logmel_name(name: str) -> int | None:
    """``"logmel"`` -> 0, ``"logmel-ctx4"`` -> 4 (frames of context each side), anything else -> None."""
    m = _NAME.match(name)
    if m is None:
        return None
    return int(m.group(1) or 0)


def stack_context(feats: torch.Tensor, lengths: torch.Tensor, context: int) -> torch.Tensor:
    """Each frame concatenated with its ``context`` neighbours on either side: (B, T, D) -> (B, T, (2k+1) D).

    Neighbours outside the utterance are zeros (the CMVN mean); the block order is t-k .. t .. t+k.
    """
    if context == 0:
        return feats
    B, T, D = feats.shape
    keep = (torch.arange(T, device=feats.device) < lengths[:, None]).unsqueeze(-1)  # (B, T, 1)
    x = F.pad(feats * keep, (0, 0, context, context))  # (B, T + 2k, D)
    windows = x.unfold(1, 2 * context + 1, 1)  # (B, T, D, 2k+1)
    return windows.transpose(2, 3).reshape(B, T, (2 * context + 1) * D) * keep  # (B, T, (2k+1) D)


class LogMelUpstream(WaveformUpstream):
    """The floor of every probe table: the log-mel front end with no encoder.

    It behaves like an upstream (``model(wavs, wav_lens) -> EncoderOutput``) whose only hidden state is the
    CMVN log-mel frames an encoder would have received, so a head on it measures what the features alone
    give. With ``context=k`` each frame also carries its k neighbours on either side (a linear head on that
    sees what a one-layer 2k+1-frame convolution would): the stronger floor an encoder must beat to show it
    learned more than local context. It has no parameters.
    """

    def __init__(self, feature_config: FeatureConfig | None = None, context: int = 0):
        super().__init__()
        if not isinstance(context, int) or context < 0 or context > 50:
            raise ConfigError(f"log-mel context must be an integer in 0..50 frames, got {context!r}")
        self.features = FeatureExtractor(feature_config or FeatureConfig())
        self.context = context

    @property
    def cache_ident(self) -> dict:
        """What, besides weights and front end, changes the outputs (part of feature-cache keys)."""
        return {"context": self.context}

    @property
    def hidden_size(self) -> int:
        return self.feature_config.dim * (2 * self.context + 1)

    @property
    def num_layers(self) -> int:
        return 0  # hidden_states holds only the features

    def forward(self, wavs, wav_lens=None, sample_rate: int | None = None) -> EncoderOutput:
        feats, lengths = self.extract_features(wavs, wav_lens, sample_rate)  # (B, T, D), (B,)
        feats = stack_context(feats, lengths, self.context)  # (B, T, (2k+1) D)
        return EncoderOutput(hidden_states=(feats,), last_hidden_state=feats, lengths=lengths)
