"""Reconstruction loss over altered positions only, written with a mask multiply.

``masked_select`` (s3prl) gives data-dependent shapes: it syncs the GPU, and ``torch.compile`` cannot
trace it without graph breaks. Multiplying by a 0/1 mask costs the same FLOPs and keeps shapes static.
"""

from __future__ import annotations

import torch

from ..errors import ConfigError

LOSSES = ("l1", "mse")


def masked_error(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Per-element |pred - target| (or squared error) times ``mask``, in float32: (..., D) like the inputs."""
    if kind not in LOSSES:
        raise ConfigError(f"loss must be one of {LOSSES}, got {kind!r}")
    if pred.shape != target.shape or mask.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)}, target {tuple(target.shape)} and mask {tuple(mask.shape)} differ")
    diff = pred.float() - target.float()  # (B, T, D); fp32 even under bf16 autocast
    return (diff.abs() if kind == "l1" else diff.square()) * mask.float()


def masked_error_sum(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Sum of |pred - target| (or squared error) over elements where ``mask`` is 1, computed in float32."""
    return masked_error(pred, target, mask, kind).sum()


def masked_reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                               kind: str = "l1") -> torch.Tensor:
    """Mean error over the altered elements: ``sum(err * mask) / max(sum(mask), 1)``.

    An all-zero mask (a batch of utterances too short to alter) gives 0 with a zero gradient, not NaN.
    """
    return masked_error_sum(pred, target, mask, kind) / mask.sum().float().clamp_min(1.0)
