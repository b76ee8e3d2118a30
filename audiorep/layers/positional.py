"""Sinusoidal position encodings (Transformer-paper form, as Mockingjay uses), built once and grown on demand."""

from __future__ import annotations

import torch
from torch import nn


def sinusoid_table(length: int, dim: int, device=None) -> torch.Tensor:
    """(length, dim) table: even dims sin(pos / 10000^(2i/dim)), odd dims cos of the same angle.

    Computed in float64 then cast, so long tables stay accurate (angles reach tens of thousands).
    """
    pos = torch.arange(length, dtype=torch.float64, device=device)[:, None]  # (L, 1)
    pair = torch.div(torch.arange(dim, device=device), 2, rounding_mode="floor")  # (dim,) 0,0,1,1,...
    inv = torch.pow(10000.0, -2.0 * pair.to(torch.float64) / dim)  # (dim,)
    angle = pos * inv  # (L, dim)
    table = torch.empty_like(angle)
    table[:, 0::2] = angle[:, 0::2].sin()
    table[:, 1::2] = angle[:, 1::2].cos()
    return table.float()


class SinusoidalPositions(nn.Module):
    """Adds no parameters; caches the table per device and grows it when a longer input arrives (no length cap)."""

    def __init__(self, dim: int, initial_length: int = 2048):
        super().__init__()
        self.dim = dim
        self.register_buffer("table", sinusoid_table(initial_length, dim), persistent=False)

    def forward(self, length: int) -> torch.Tensor:
        """(length, dim) encodings for positions 0..length-1."""
        if length > self.table.shape[0]:
            new_len = max(length, 2 * self.table.shape[0])
            self.table = sinusoid_table(new_len, self.dim, device=self.table.device)
        return self.table[:length]
