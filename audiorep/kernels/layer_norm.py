"""``LayerNorm(x + dropout(y))``, the post-LN residual step: PyTorch reference and dispatch to the fused kernel.

Backends: ``"torch"`` (the reference below: what the encoders compute today), ``"triton"`` (the fused
kernel in ``triton_layer_norm.py``, imported lazily) and ``"auto"``: the backend measured fastest for this
GPU, dtype and width by ``benchmarks/fused_ops.py`` (entries with ``"op": "add_layer_norm"`` in
``tuned.json``); torch on CPU and wherever nothing was measured. ``AUDIOREP_FUSED_OPS`` replaces "auto".
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from . import dispatch

LN_BACKENDS = ("auto", "torch", "triton")


def add_layer_norm_reference(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             eps: float, dropout_p: float = 0.0) -> torch.Tensor:
    """The unfused computation: dropout on the branch, residual add, LayerNorm over the last dim."""
    z = x + F.dropout(y, dropout_p, training=dropout_p > 0.0)  # (..., H)
    return F.layer_norm(z, (z.shape[-1],), weight, bias, eps)


def resolve_ln_backend(x: torch.Tensor, backend: str = "auto", y: torch.Tensor | None = None) -> str:
    """The backend ``add_layer_norm`` will use for residual x and branch y (y's dtype defaults to x's)."""
    if backend == "auto":
        backend = os.environ.get("AUDIOREP_FUSED_OPS", "auto")
    if backend not in LN_BACKENDS:
        raise ValueError(f"add_layer_norm backend must be one of {LN_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if not x.is_cuda:
        return "torch"
    name, cap = dispatch._device_key(x.device.index or 0)
    dtype = dispatch._DTYPE_NAMES.get(x.dtype)
    branch = dispatch._DTYPE_NAMES.get((y if y is not None else x).dtype)
    fallback = None
    for e in dispatch._TABLE["entries"]:
        if (e.get("op"), e.get("dtype"), e.get("branch_dtype"), e.get("hidden")) != (
                "add_layer_norm", dtype, branch, x.shape[-1]):
            continue
        if e.get("device") == name:
            return e["best"] if e.get("best") in ("torch", "triton") else "torch"
        if e.get("capability") == cap and fallback is None:
            fallback = e.get("best")
    return fallback if fallback in ("torch", "triton") else "torch"


def add_layer_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   dropout_p: float = 0.0, backend: str = "auto") -> torch.Tensor:
    """``LayerNorm(x + dropout(y))`` over the last dim with LayerNorm parameters (H,); x, y: (..., H)."""
    if resolve_ln_backend(x, backend, y) == "triton":
        from . import triton_layer_norm  # lazy: never imported by `import audiorep`

        return triton_layer_norm.add_layer_norm(x, y, weight, bias, eps, dropout_p)
    return add_layer_norm_reference(x, y, weight, bias, eps, dropout_p)
