"""CPU inference fast path: linear layers through oneDNN with their epilogue fused into the GEMM.

On CPU, eager PyTorch runs ``gelu(linear(x))`` as three passes over the (B, T, 4H) activation (copy the
bias into the output, GEMM with beta=1, GELU) and ``x + linear(h)`` as three more over (B, T, H).
oneDNN's matmul applies bias, exact (erf) GELU or a residual add while each output tile is still in
cache, so those passes disappear. The op is ``torch.ops.mkldnn._linear_pointwise``, the one
TorchInductor emits for frozen CPU graphs; it has no autograd formula, so it is used only where no
gradient can be needed (``torch.no_grad``/``torch.inference_mode`` and eval mode, where dropout is the
identity). Everywhere else, and when the op is missing from a torch build, the plain eager ops run.
Results match the eager ops to float32 rounding (~1e-6).

The same inference path packs the valid frames of a padded batch back to back (see
``MockingjayModel.encode``), so no GEMM work is spent on padding.

The kernel config's ``cpu_fusion`` switch (``AUDIOREP_CPU_FUSION=0``) turns both off for the modules built
while it holds (see ``config.py``); here are only the per-call facts (eval, no autograd, CPU, fp32 or bf16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

if TYPE_CHECKING:
    from .config import KernelChoice


def _have_op() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    except (AttributeError, RuntimeError):
        return False


def _have_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


HAVE_ONEDNN_LINEAR = _have_op()  # a fact about this torch build, probed once at import
# oneDNN computes bf16 on this CPU (AVX512-BF16/AMX, or AVX512BW conversions): bf16 inference may fuse too
CPU_BF16 = _have_bf16()


def cpu_inference(x: torch.Tensor, training: bool) -> bool:
    """Whether ``x`` is on the CPU inference path right now: eval mode, no autograd, CPU."""
    return not training and not torch.is_grad_enabled() and x.device.type == "cpu"


def fusion_enabled(choice: "KernelChoice", x: torch.Tensor, training: bool) -> bool:
    """Whether a module built with ``choice`` may use the fused oneDNN linears for input ``x`` right now
    (fp32, or bf16 where oneDNN computes it: see ``MockingjayModel.reduced_precision``)."""
    ok_dtype = x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and CPU_BF16)
    return choice.onednn_linear and ok_dtype and cpu_inference(x, training)


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False, residual: torch.Tensor | None = None,
           fused: bool = True) -> torch.Tensor:
    """``layer(x)``, then exact GELU (``gelu``) or ``+ residual``; fused into one oneDNN call when ``fused``.

    x (..., in) -> (..., out); ``residual`` must have the output's shape.
    """
    if gelu and residual is not None:
        raise ValueError("linear: pass gelu or residual, not both")
    if not fused:
        y = F.linear(x, layer.weight, layer.bias)
        if gelu:
            return F.gelu(y)
        return y if residual is None else y + residual
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")  # erf GELU
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
