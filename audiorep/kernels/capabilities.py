"""What this torch build and this machine can run, probed once: the facts both the kernel switches and the
kernels read, in a leaf module so neither has to import the other."""

from __future__ import annotations

import torch


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


HAVE_ONEDNN_LINEAR = _have_op()  # this torch build has oneDNN's fused linear op
# oneDNN computes bf16 on this CPU (AVX512-BF16/AMX, or AVX512BW conversions): bf16 inference may fuse too
CPU_BF16 = _have_bf16()

# What the Triton attention kernel takes; here so "auto" dispatch can check without importing triton.
TRITON_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
TRITON_HEAD_DIMS = (16, 32, 64, 128)
