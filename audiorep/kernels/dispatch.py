"""The one attention entry point the encoders call; picks a backend and keeps the reference in reach."""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from .reference import attention_reference

BACKENDS = ("auto", "sdpa", "reference", "triton")


def _default_backend() -> str:
    """AUDIOREP_ATTENTION overrides "auto" everywhere (handy to A/B a whole model run)."""
    return os.environ.get("AUDIOREP_ATTENTION", "auto")


def resolve_backend(q: torch.Tensor, backend: str = "auto") -> str:
    """The backend a call will actually use. CPU always gets SDPA; CUDA gets SDPA until a measured
    table says otherwise (the Triton kernel registers itself here when it lands)."""
    if backend == "auto":
        backend = _default_backend()
    if backend not in BACKENDS:
        raise ValueError(f"attention backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "sdpa"
    if backend == "triton" and not q.is_cuda and os.environ.get("TRITON_INTERPRET") != "1":
        raise ValueError("attention backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for tests)")
    return backend


def key_padding_mask(lengths: torch.Tensor, T: int) -> torch.Tensor:
    """(B, 1, 1, T) bool mask for SDPA: True where a key may be attended."""
    return (torch.arange(T, device=lengths.device)[None, :] < lengths[:, None])[:, None, None, :]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    backend: str = "auto",
    attn_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bidirectional attention over padded sequences.

    q, k, v: (B, H, T, D); lengths: (B,) valid frames or None (all valid). Keys past a length get no
    weight. Query rows past a length are not meaningful (the reference returns zeros, SDPA returns the
    attention over valid keys); callers ignore them. ``attn_mask`` may pass a precomputed
    ``key_padding_mask(lengths, T)`` so a stack of layers builds it once.
    """
    which = resolve_backend(q, backend)
    if which == "reference":
        return attention_reference(q, k, v, lengths, dropout_p)
    if which == "triton":
        from . import triton_attention  # lazy: never imported by `import audiorep`

        return triton_attention.attention(q, k, v, lengths, dropout_p)
    if attn_mask is None and lengths is not None:
        attn_mask = key_padding_mask(lengths, q.shape[2])
    return F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=dropout_p)
