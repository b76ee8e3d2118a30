"""Kernels behind dispatch functions, with the PyTorch references beside them, and the switches that pick them.

``config.py`` reads the switches once and :func:`choose` turns them into the :class:`KernelChoice` a module
records when it is built. Triton kernels are imported lazily on first use with backend "triton" (or when
"auto" picks them).
"""

from .config import KernelChoice, KernelConfig, choose, kernel_config, use_kernels
from .dispatch import BACKENDS, attention, key_padding_mask, resolve_backend
from .layer_norm import add_layer_norm, add_layer_norm_reference, resolve_ln_backend
from .reference import attention_reference

__all__ = [
    "BACKENDS", "KernelChoice", "KernelConfig", "add_layer_norm", "add_layer_norm_reference", "attention",
    "attention_reference", "choose", "kernel_config", "key_padding_mask", "resolve_backend", "resolve_ln_backend",
    "use_kernels",
]
