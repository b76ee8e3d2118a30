"""Pure-PyTorch attention in fp32: the ground truth every faster backend is tested against."""

from __future__ import annotations

import math

import torch


def attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Softmax attention with a key-padding mask, computed in fp32 and cast back to q's dtype.

    q, k, v: (B, H, T, D); lengths: (B,) valid frames. Keys at or past a length get exactly zero weight;
    query rows past a length are returned as zeros.
    """
    B, H, T, D = q.shape
    scale = 1.0 / math.sqrt(D) if scale is None else scale
    scores = torch.einsum("bhqd,bhkd->bhqk", q.float(), k.float()) * scale  # (B, H, T, T)
    if lengths is not None:
        keep = torch.arange(T, device=q.device)[None, :] < lengths[:, None]  # (B, T)
        scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    probs = scores.softmax(dim=-1)  # (B, H, T, T)
    if dropout_p > 0.0:
        probs = torch.nn.functional.dropout(probs, p=dropout_p)
    out = torch.einsum("bhqk,bhkd->bhqd", probs, v.float())  # (B, H, T, D)
    if lengths is not None:
        out = out * keep[:, None, :, None]
    return out.to(q.dtype)
