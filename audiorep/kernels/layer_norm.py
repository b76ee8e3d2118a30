"""``LayerNorm(x + dropout(y))``, the post-LN residual step: PyTorch reference and dispatch to the fused kernel.

Backends: ``"torch"`` (the reference below: what the encoders computed before the fused kernel), ``"triton"``
(the fused kernel in ``triton_layer_norm.py``, imported lazily) and ``"auto"``: the backend measured fastest
for this GPU, dtype and width by ``benchmarks/fused_ops.py`` (entries with ``"op": "add_layer_norm"`` in
``tuned.json``); torch on CPU and wherever nothing was measured. The kernel config's ``layer_norm`` switch
(``AUDIOREP_FUSED_OPS``) replaces "auto". ``TransformerLayer`` calls :func:`add_layer_norm` for both of its
residual steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import dispatch
from .config import LAYER_NORM_BACKENDS as LN_BACKENDS, kernel_config


def add_layer_norm_reference(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                             eps: float, dropout_p: float = 0.0) -> torch.Tensor:
    """The unfused computation: dropout on the branch, residual add, LayerNorm over the last dim."""
    z = x + F.dropout(y, dropout_p, training=dropout_p > 0.0)  # (..., H)
    return F.layer_norm(z, (z.shape[-1],), weight, bias, eps)


def resolve_ln_backend(x: torch.Tensor, backend: str = "auto", y: torch.Tensor | None = None) -> str:
    """The backend ``add_layer_norm`` will use for residual x and branch y (y's dtype defaults to x's)."""
    if backend == "auto":
        backend = kernel_config().layer_norm
    if backend not in LN_BACKENDS:
        raise ValueError(f"add_layer_norm backend must be one of {LN_BACKENDS}, got {backend!r}")
    if backend != "auto":
        return backend
    if not x.is_cuda:
        return "torch"
    name, cap = dispatch._device_key(x.device.index or 0)
    key = {"op": "add_layer_norm", "dtype": dispatch._DTYPE_NAMES.get(x.dtype),
           "branch_dtype": dispatch._DTYPE_NAMES.get((y if y is not None else x).dtype), "hidden": x.shape[-1]}
    best = dispatch.measured_best(key, name, cap)
    return best if best in ("torch", "triton") else "torch"


def add_layer_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   dropout_p: float = 0.0, backend: str = "auto") -> torch.Tensor:
    """``LayerNorm(x + dropout(y))`` over the last dim with LayerNorm parameters (H,); x, y: (..., H)."""
    if resolve_ln_backend(x, backend, y) == "triton":
        from . import triton_layer_norm  # lazy: never imported by `import audiorep`

        return triton_layer_norm.add_layer_norm(x, y, weight, bias, eps, dropout_p)
    return add_layer_norm_reference(x, y, weight, bias, eps, dropout_p)
