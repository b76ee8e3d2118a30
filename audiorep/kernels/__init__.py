"""Attention (and the post-LN residual step) behind dispatch functions; the PyTorch references live beside them.

Triton kernels are imported lazily on first use with backend "triton" (or when "auto" picks them).
"""

from .dispatch import BACKENDS, attention, key_padding_mask, resolve_backend
from .layer_norm import add_layer_norm, add_layer_norm_reference, resolve_ln_backend
from .reference import attention_reference

__all__ = [
    "BACKENDS", "add_layer_norm", "add_layer_norm_reference", "attention", "attention_reference",
    "key_padding_mask", "resolve_backend", "resolve_ln_backend",
]
