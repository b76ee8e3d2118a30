"""Building blocks of the encoders: positions and transformer layers."""

from .positional import SinusoidalPositions, sinusoid_table
from .transformer import SelfAttention, TransformerLayer

__all__ = ["SelfAttention", "SinusoidalPositions", "TransformerLayer", "sinusoid_table"]
