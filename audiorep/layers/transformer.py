"""Post-LN transformer block (BERT/Mockingjay layout) whose attention goes through audiorep.kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..kernels import attention


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (one GEMM instead of three)."""

    def __init__(self, hidden_size: int, num_heads: int, attn_dropout: float):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)  # rows: [query; key; value]
        self.out = nn.Linear(hidden_size, hidden_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, attn_mask: torch.Tensor | None,
                backend: str = "auto") -> torch.Tensor:
        qkv = self.qkv(x)  # (B, T, 3H)
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)  # (B, nh, T, d)
        p = self.attn_dropout if self.training else 0.0
        ctx = attention(q, k, v, lengths, dropout_p=p, backend=backend, attn_mask=attn_mask)  # (B, nh, T, d)
        return self.out(rearrange(ctx, "b h t d -> b t (h d)"))  # (B, T, H)


class TransformerLayer(nn.Module):
    """x -> LN(x + Drop(Attn(x))) -> LN(y + Drop(FFN(y))), FFN = Linear -> erf-GELU -> Linear."""

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float, attn_dropout: float, layer_norm_eps: float):
        super().__init__()
        self.attn = SelfAttention(hidden_size, num_heads, attn_dropout)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.ffn_in = nn.Linear(hidden_size, intermediate_size)
        self.ffn_out = nn.Linear(intermediate_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None, backend: str = "auto") -> torch.Tensor:
        x = self.attn_norm(x + self.dropout(self.attn(x, lengths, attn_mask, backend)))  # (B, T, H)
        h = F.gelu(self.ffn_in(x))  # (B, T, 4H); exact erf GELU as in BERT/Mockingjay
        return self.ffn_norm(x + self.dropout(self.ffn_out(h)))  # (B, T, H)
