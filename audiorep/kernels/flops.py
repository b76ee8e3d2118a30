"""FLOPs of a Mockingjay-family encoder per forward call and per pretraining step: the numerator of every
benchmark's "achieved GFLOP/s" and "% of GEMM roofline".

Counted: the GEMMs (input projection, fused QKV, attention output, FFN in/out, and the prediction head for a
training step) and attention's two batched matmuls (QK^T and PV), at 2 FLOPs per multiply-add.
Not counted: LayerNorm, GELU, softmax, dropout, adds (a few FLOPs per element, memory-bound; under 2% of
the total at H = 768). Written once here so the benchmarks and tests cannot disagree.

Useful work only, by default: GEMM rows are the valid frames and each utterance attends over its own
frames (4 * n^2 * H per layer for an utterance of n frames). ``padded_to=T`` counts what a padded batch
computes instead (every utterance T frames), to show what padding costs. A backward pass is counted as
twice its forward (dX and dW per GEMM, dQ/dK and dP/dV per attention matmul), except that the input
projection needs no dX (features carry no gradient); recomputation inside fused kernels is not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence


@dataclass(frozen=True)
class FlopCount:
    """FLOPs split into GEMM (projections, FFN, head) and attention (QK^T + PV) work."""

    gemm: int
    attention: int

    @property
    def total(self) -> int:
        return self.gemm + self.attention

    def __add__(self, other: "FlopCount") -> "FlopCount":
        return FlopCount(self.gemm + other.gemm, self.attention + other.attention)


def _frames(lengths: Sequence[int], padded_to: int | None) -> tuple[int, list[int]]:
    lens = [int(n) for n in lengths]
    if any(n < 0 for n in lens):
        raise ValueError(f"lengths: frame counts must be >= 0, got {lens}")
    if padded_to is not None:
        if padded_to < max(lens, default=0):
            raise ValueError(f"padded_to {padded_to}: shorter than the longest utterance ({max(lens)})")
        lens = [padded_to] * len(lens)
    return sum(lens), lens


def input_projection_flops(config, rows: int) -> int:
    """The input projection(s): D -> H, or D -> E -> H with a factorized (ALBERT) embedding."""
    E = config.embedding_size
    return 2 * rows * config.input_dim * (E or config.hidden_size) + (2 * rows * E * config.hidden_size if E else 0)


def forward_flops(config, lengths: Sequence[int], padded_to: int | None = None, head: bool = False) -> FlopCount:
    """FLOPs of one encoder forward over utterances of ``lengths`` frames (``head``: + the prediction head).

    ``config`` is a :class:`~audiorep.models.mockingjay.MockingjayConfig`; shared layers (AALBERT) count at
    every depth, since they run at every depth.
    """
    rows, lens = _frames(lengths, padded_to)
    H, I, L = config.hidden_size, config.intermediate_size, config.num_layers
    per_layer = 2 * rows * (3 * H * H + H * H + 2 * H * I)  # QKV, output projection, FFN in + out
    gemm = input_projection_flops(config, rows) + L * per_layer
    if head:
        target = config.output_dim or config.input_dim
        gemm += 2 * rows * (H * H + H * target)  # dense H -> H, output H -> target
    attention = L * sum(4 * n * n * H for n in lens)  # QK^T and PV over all heads: 2 * (2 n^2 d) * heads
    return FlopCount(gemm, attention)


def train_step_flops(config, lengths: Sequence[int], padded_to: int | None = None) -> FlopCount:
    """FLOPs of one pretraining step: encoder + prediction head, forward and backward (optimizer excluded)."""
    rows, _ = _frames(lengths, padded_to)
    fwd = forward_flops(config, lengths, padded_to, head=True)
    no_input_grad = 2 * rows * config.input_dim * (config.embedding_size or config.hidden_size)
    return FlopCount(3 * fwd.gemm - no_input_grad, 3 * fwd.attention)


def gemm_shapes(config, rows: int, head: bool = False) -> list[tuple[int, int, int]]:
    """The (M, K, N) of the model's forward GEMMs at ``rows`` frames: the shapes a roofline should be measured on."""
    H, I, E = config.hidden_size, config.intermediate_size, config.embedding_size
    shapes = [(rows, config.input_dim, E or H)] + ([(rows, E, H)] if E else [])
    shapes += [(rows, H, 3 * H), (rows, H, H), (rows, H, I), (rows, I, H)]
    if head:
        shapes += [(rows, H, H), (rows, H, config.output_dim or config.input_dim)]
    return list(dict.fromkeys(shapes))
