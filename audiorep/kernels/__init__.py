"""Attention kernels behind one dispatch function; the fp32 reference lives beside them."""

from .dispatch import BACKENDS, attention, key_padding_mask, resolve_backend
from .reference import attention_reference

__all__ = ["BACKENDS", "attention", "attention_reference", "key_padding_mask", "resolve_backend"]
