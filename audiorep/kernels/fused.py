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

Training on CPU uses the same oneDNN matmul for its three GEMMs per linear layer (:func:`dense`): the forward
product and, in backward, dX = dY W and dW = dY^T X, the transposes passed as strided views. MKL, which
``F.linear`` and ``torch.mm`` call on CPU, picks a slow code path on AMD processors, where oneDNN's GEMMs
are the faster of the two on mockingjay-base's shapes. ``benchmarks/pretrain_step.py`` measures both
libraries' rates on the machine at hand (its roofline; results in ``benchmarks/results/pretrain_step*.md``),
which is the check to rerun before trusting this choice on another CPU. Results equal ``F.linear`` to float32
rounding (the two libraries sum in different orders); ``AUDIOREP_ONEDNN_TRAINING=0`` switches it off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from .capabilities import CPU_BF16

if TYPE_CHECKING:
    from .config import KernelChoice


def cpu_inference(x: torch.Tensor, training: bool) -> bool:
    """Whether ``x`` is on the CPU inference path right now: eval mode, no autograd, CPU."""
    return not training and not torch.is_grad_enabled() and x.device.type == "cpu"


def fusion_enabled(choice: "KernelChoice", x: torch.Tensor, training: bool) -> bool:
    """Whether a module built with ``choice`` may use the fused oneDNN linears for input ``x`` right now
    (fp32, or bf16 where oneDNN computes it: see ``MockingjayModel.reduced_precision``)."""
    ok_dtype = x.dtype == torch.float32 or (x.dtype == torch.bfloat16 and CPU_BF16)
    return choice.onednn_linear and ok_dtype and cpu_inference(x, training)


def onednn_mm(a: torch.Tensor, b_t: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``a @ b_t.T (+ bias)`` by oneDNN's matmul; ``a`` (..., K), ``b_t`` (N, K), either may be a strided view."""
    return torch.ops.mkldnn._linear_pointwise(a, b_t, bias, "none", [], "")  # (..., N)


class _OneDNNLinear(torch.autograd.Function):
    """``F.linear`` whose forward and backward GEMMs all run in oneDNN (see the module doc)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return onednn_mm(x, weight, bias)  # (..., out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, gy: torch.Tensor):
        x, weight = ctx.saved_tensors
        gx = gw = gb = None
        if ctx.needs_input_grad[0]:
            gx = onednn_mm(gy, weight.t())  # (..., in) = dY W
        g2 = gy.reshape(-1, gy.shape[-1])  # (M, out)
        if ctx.needs_input_grad[1]:
            x2 = x.reshape(-1, x.shape[-1])  # (M, in)
            # oneDNN copies a strided first operand to contiguous; the second it reads in place. Both products
            # have a transposed (M-strided) first operand, so transpose the narrower of dY and X.
            if g2.shape[1] <= x2.shape[1]:
                gw = onednn_mm(g2.t(), x2.t())  # (out, in) = dY^T X
            else:
                gw = onednn_mm(x2.t(), g2.t()).t()  # (out, in) = (X^T dY)^T, a transposed view
        if ctx.needs_input_grad[2]:  # False when there is no bias
            gb = g2.sum(0)  # (out,)
        return gx, gw, gb


def onednn_fp32(x: torch.Tensor) -> bool:
    """Whether ``x`` may take the oneDNN training GEMMs: CPU, fp32 and no autocast (under autocast the plain
    ops run, so autocast still picks their dtype)."""
    return x.device.type == "cpu" and x.dtype == torch.float32 and not torch.is_autocast_enabled("cpu")


def onednn_training(choice: "KernelChoice", x: torch.Tensor) -> bool:
    """Whether :func:`dense` runs ``x`` through oneDNN: the choice allows it and :func:`onednn_fp32`."""
    return choice.onednn_training and onednn_fp32(x)


def dense(x: torch.Tensor, layer: nn.Linear, choice: "KernelChoice") -> torch.Tensor:
    """``layer(x)`` off the fused inference path, differentiable: (..., in) -> (..., out).

    oneDNN's GEMMs forward and backward where :func:`onednn_training` says so, ``F.linear`` otherwise.
    """
    if type(layer) is not nn.Linear:  # a swapped-in module (dynamic int8): its own forward runs the GEMM
        return layer(x)
    if onednn_training(choice, x):
        return _OneDNNLinear.apply(x, layer.weight, layer.bias)
    return F.linear(x, layer.weight, layer.bias)


def linear(x: torch.Tensor, layer: nn.Linear, gelu: bool = False, residual: torch.Tensor | None = None,
           fused: bool = True) -> torch.Tensor:
    """``layer(x)``, then exact GELU (``gelu``) or ``+ residual``; fused into one oneDNN call when ``fused``.

    x (..., in) -> (..., out); ``residual`` must have the output's shape.
    """
    if gelu and residual is not None:
        raise ValueError("linear: pass gelu or residual, not both")
    if not fused or type(layer) is not nn.Linear:  # a swapped-in module (dynamic int8) runs its own GEMM
        y = F.linear(x, layer.weight, layer.bias) if type(layer) is nn.Linear else layer(x)
        if gelu:
            return F.gelu(y)
        return y if residual is None else y + residual
    if residual is not None:
        return torch.ops.mkldnn._linear_pointwise.binary(x, residual, layer.weight, layer.bias, "add")
    if gelu:
        return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "gelu", [], "none")  # erf GELU
    return torch.ops.mkldnn._linear_pointwise(x, layer.weight, layer.bias, "none", [], "")
