"""The text-only baseline: the same text encoder as Self-MM / DMD, [CLS] -> MLP -> score. No audio is read."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from .base import register_head
from ..common import FusionHead, FusionOutput, TextEncoder, l1


@dataclass
class TextOnlyConfig:
    """Sizes of the text-only baseline's MLP."""

    hidden: int = 64  # MLP width over [CLS]
    dropout: float = 0.1  # before the first linear


@register_head("text", TextOnlyConfig, needs=("text",), row=0,
               summary="text only: [CLS] -> MLP, reads no audio (the table's floor)")
class TextOnly(FusionHead):
    """[CLS] -> dropout -> Linear(hidden) -> ReLU -> Linear(1); ignores audio and vision (the table's floor).

    It keeps no ``cfg`` attribute: :attr:`FusionHead.uses_vision` then stays False, so no vision is fed to it.
    """

    def __init__(self, cfg: TextOnlyConfig, text_encoder: TextEncoder):
        super().__init__()
        self.text_encoder = text_encoder
        self.mlp = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(text_encoder.hidden_size, cfg.hidden), nn.ReLU(),
                                 nn.Linear(cfg.hidden, 1))

    def forward(self, text, audio=None, audio_lens=None, vision=None, vision_lens=None, labels=None,
                index=None) -> FusionOutput:
        states, _ = self.text_encoder(text)  # (B, L, H)
        pred = self.mlp(states[:, 0]).squeeze(-1)  # (B,)
        out = FusionOutput(pred=pred)
        if labels is not None:
            out.losses = {"task": l1(pred, labels), "total": l1(pred, labels)}
        return out
