"""The text-only baseline: the same text encoder as Self-MM / DMD, [CLS] -> MLP -> score. No audio is read."""

from __future__ import annotations

from torch import nn

from .common import FusionHead, FusionOutput, TextEncoder, l1


class TextOnly(FusionHead):
    """[CLS] -> dropout -> Linear(hidden) -> ReLU -> Linear(1); ignores audio and vision (the table's floor)."""

    def __init__(self, text_encoder: TextEncoder, hidden: int = 64, dropout: float = 0.1):
        super().__init__()
        self.text_encoder = text_encoder
        self.mlp = nn.Sequential(nn.Dropout(dropout), nn.Linear(text_encoder.hidden_size, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, text, audio=None, audio_lens=None, vision=None, vision_lens=None, labels=None,
                index=None) -> FusionOutput:
        states, _ = self.text_encoder(text)  # (B, L, H)
        pred = self.mlp(states[:, 0]).squeeze(-1)  # (B,)
        out = FusionOutput(pred=pred)
        if labels is not None:
            out.losses = {"task": l1(pred, labels), "total": l1(pred, labels)}
        return out
