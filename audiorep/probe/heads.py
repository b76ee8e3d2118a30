"""Small downstream heads on (B, T, H) features with (B,) valid lengths.

Probes are deliberately small: a head that is too strong hides how much the representation itself holds.
"""

from __future__ import annotations

import torch
from torch import nn

from ..audio import valid_mask
from ..errors import ConfigError


def mean_pool(feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Mean over valid frames only: (B, T, H), (B,) -> (B, H). Padding never dilutes the mean."""
    keep = valid_mask(lengths.to(feats.device), feats.shape[1]).unsqueeze(-1).to(feats.dtype)  # (B, T, 1)
    return (feats * keep).sum(1) / keep.sum(1).clamp_min(1.0)  # (B, H)


class FrameLinear(nn.Module):
    """One linear map per frame: (B, T, H) -> (B, T, C). The phone *linear probe*."""

    def __init__(self, hidden_size: int, num_outputs: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(feats)  # (B, T, C)


class FrameMLP(nn.Module):
    """One hidden layer per frame (Linear -> ReLU -> dropout -> Linear): the phone *1-hidden* probe."""

    def __init__(self, hidden_size: int, num_outputs: int, mlp_size: int = 256, dropout: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden_size, mlp_size), nn.ReLU(), nn.Dropout(dropout), nn.Linear(mlp_size, num_outputs)
        )

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.net(feats)  # (B, T, C)


class MeanPoolLinear(nn.Module):
    """Utterance level: mean over valid frames, then a linear map: (B, T, H) -> (B, C).

    On CMVN log-mel frames (mean zero per utterance) this head is at chance by construction; use
    :class:`MeanPoolMLP` for the floor.
    """

    def __init__(self, hidden_size: int, num_outputs: int):
        super().__init__()
        self.proj = nn.Linear(hidden_size, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.proj(mean_pool(feats, lengths))  # (B, C)


class MeanPoolMLP(nn.Module):
    """Utterance level with a per-frame hidden layer before the pool: Linear -> ReLU -> mean -> Linear.

    s3prl's speaker head is Linear -> mean pool -> Linear; the ReLU here matters for features with
    per-utterance CMVN (the log-mel floor): their mean over time is exactly zero, so any head that pools
    first (or is linear up to the pool) sees the same input for every utterance and stays at chance.
    """

    def __init__(self, hidden_size: int, num_outputs: int, mlp_size: int = 256, dropout: float = 0.1):
        super().__init__()
        self.frame = nn.Sequential(nn.Linear(hidden_size, mlp_size), nn.ReLU(), nn.Dropout(dropout))
        self.out = nn.Linear(mlp_size, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(mean_pool(self.frame(feats), lengths))  # (B, T, M) -> (B, M) -> (B, C)


# head name -> (class, output level): one name per class, "<level>-<kind>"; which names a task accepts is the
# task's `heads` (probe/tasks/)
HEADS = {
    "frame-linear": (FrameLinear, "frame"),
    "frame-mlp": (FrameMLP, "frame"),
    "mean-linear": (MeanPoolLinear, "utterance"),
    "mean-mlp": (MeanPoolMLP, "utterance"),
}


def build_head(name: str, hidden_size: int, num_outputs: int, mlp_size: int = 256, dropout: float = 0.1
               ) -> nn.Module:
    """A head by name (see :data:`HEADS`)."""
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; known: {', '.join(HEADS)}")
    cls, _ = HEADS[name]
    if cls in (FrameMLP, MeanPoolMLP):
        return cls(hidden_size, num_outputs, mlp_size=mlp_size, dropout=dropout)
    return cls(hidden_size, num_outputs)


class ProjectedFrameLinear(nn.Module):
    """SUPERB's frame-level probe: a projector to ``project_dim``, then a linear map per frame: (B, T, H) ->
    (B, T, C). Two linear maps with nothing between them: the projector only fixes the width the output
    layer sees, as s3prl's downstream experts do."""

    def __init__(self, hidden_size: int, num_outputs: int, project_dim: int = 256):
        super().__init__()
        self.projector = nn.Linear(hidden_size, project_dim)
        self.out = nn.Linear(project_dim, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(self.projector(feats))  # (B, T, P) -> (B, T, C)


class ProjectedMeanLinear(nn.Module):
    """SUPERB's utterance-level probe: projector per frame, mean over valid frames, linear: (B, T, H) -> (B, C)."""

    def __init__(self, hidden_size: int, num_outputs: int, project_dim: int = 256):
        super().__init__()
        self.projector = nn.Linear(hidden_size, project_dim)
        self.out = nn.Linear(project_dim, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.out(mean_pool(self.projector(feats), lengths))  # (B, T, P) -> (B, P) -> (B, C)


HEADS.update({"superb-frame": (ProjectedFrameLinear, "frame"), "superb-mean": (ProjectedMeanLinear, "utterance")})
