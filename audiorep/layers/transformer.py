"""Post-LN transformer block (BERT/Mockingjay layout) whose attention and residual steps go through audiorep.kernels.

Each block records its kernels when built (``audiorep.kernels.choose``); no call passes a backend name.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ..kernels import KernelChoice, add_layer_norm, attention, choose, resolve_ln_backend
from ..kernels import fused
from ..kernels.cpu_dropout import dropout_scale_mask


BIAS_FLOOR = 50.0  # lowest distance-bias score; see SelfAttention.score_bias


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused QKV projection (one GEMM instead of three)."""

    def __init__(self, hidden_size: int, num_heads: int, attn_dropout: float, kernels: KernelChoice | None = None,
                 distance_bias: bool = False):
        super().__init__()
        if hidden_size % num_heads:
            raise ValueError(f"hidden_size {hidden_size} is not a multiple of num_heads {num_heads}")
        self.num_heads = num_heads
        self.attn_dropout = attn_dropout
        self.kernels = kernels or choose()
        self.qkv = nn.Linear(hidden_size, 3 * hidden_size)  # rows: [query; key; value]
        self.out = nn.Linear(hidden_size, hidden_size)
        # distance bias: score(i, j) -= slope_h * |i - j|, one learned slope per head (log-parametrised, so it
        # stays positive). Start: slopes spread geometrically from 1/2 (a few frames) to 1/256 (a whole crop),
        # whatever the head count. ALiBi's 2^(-8h/nh) gives 2 heads 1/16 and 1/256, and those moved too slowly
        # at lr 1e-3 (the local head reached 0.10 after 1000 steps).
        self.distance_log_slope = None
        if distance_bias:
            frac = torch.linspace(0.0, 1.0, num_heads) if num_heads > 1 else torch.zeros(1)
            self.distance_log_slope = nn.Parameter(-(1.0 + 7.0 * frac) * math.log(2.0))  # (nh,)

    def score_bias(self, T: int, device: torch.device) -> torch.Tensor | None:
        """The additive score bias for T frames, (nh, T, T), or None without a distance bias."""
        if self.distance_log_slope is None:
            return None
        t = torch.arange(T, device=device, dtype=torch.float32)
        dist = (t[:, None] - t[None, :]).abs()  # (T, T)
        # Floor at -BIAS_FLOOR: past it a key's weight is < e^-50 (2e-22) of the nearest one's, already nothing,
        # while exp() of scores below about -87 gives float32 denormals, which CPUs compute far slower
        # (the step-time gain on the trained AALBERT is in the README's speed notes and docs/speed.md).
        return (-self.distance_log_slope.exp()[:, None, None] * dist).clamp_min(-BIAS_FLOOR)  # (nh, T, T)

    def context(self, x: torch.Tensor, lengths: torch.Tensor | None, attn_mask: torch.Tensor | None,
                fuse: bool = False) -> torch.Tensor:
        """Attention output before the output projection: (B, T, H) -> (B, T, H)."""
        qkv = fused.linear(x, self.qkv) if fuse else fused.dense(x, self.qkv, self.kernels)  # (B, T, 3H)
        q, k, v = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)  # (B, nh, T, d)
        p = self.attn_dropout if self.training else 0.0
        ctx = attention(q, k, v, lengths, dropout_p=p, backend=self.kernels.attention,
                        attn_mask=attn_mask, bias=self.score_bias(x.shape[1], x.device))  # (B, nh, T, d)
        return rearrange(ctx, "b h t d -> b t (h d)")  # (B, T, H); a view when SDPA wrote (B, T, nh, d)

    def context_packed(self, x: torch.Tensor, lens: list[int], fuse: bool = False) -> torch.Tensor:
        """Like :meth:`context` for utterances packed back to back without padding.

        x (N, H) holds utterance i's frames at rows ``sum(lens[:i]) ..``; each attends over itself alone,
        so no mask is needed and no work is spent on padding. On CPU one SDPA call per utterance measured
        faster than a block-diagonal mask over all N frames (which computes N^2 scores) and than the padded,
        key-masked batch, for training (with attention dropout) and inference alike.
        """
        qkv = fused.linear(x, self.qkv) if fuse else fused.dense(x, self.qkv, self.kernels)  # (N, 3H)
        p = self.attn_dropout if self.training else 0.0
        outs = []
        bias = self.score_bias(max(lens, default=0), x.device)  # (nh, T, T), built once; each utterance a corner
        for part in qkv.split(lens):  # split, not slicing: its backward writes each gradient once, no zero fill
            if part.shape[0] == 0:
                continue
            q, k, v = rearrange(part, "t (three h d) -> three 1 h t d", three=3, h=self.num_heads)  # (1, nh, n, d)
            n = part.shape[0]
            # the longest utterance takes the whole bias: a slice's backward would zero-fill and copy its gradient
            b = bias if bias is None or n == bias.shape[-1] else bias[:, :n, :n]  # (nh, n, n)
            out = attention(q, k, v, None, dropout_p=p, backend=self.kernels.attention, bias=b,
                            onednn=self.kernels.onednn_training)  # (1, nh, n, d)
            outs.append(rearrange(out, "1 h t d -> t (h d)"))  # (n, H)
        if len(outs) == 1:
            return outs[0].contiguous()  # (N, H)
        return torch.cat(outs) if outs else x.new_zeros(x.shape)  # (N, H)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None, attn_mask: torch.Tensor | None) -> torch.Tensor:
        return fused.dense(self.context(x, lengths, attn_mask), self.out, self.kernels)  # (B, T, H)

    @torch.no_grad()
    def probabilities(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """The attention weights this layer gives input ``x`` (B, T, H): (B, nh, T, T), rows sum to 1.

        Plain softmax(QK^T / sqrt(d) + distance bias) with padded keys masked and no dropout, for diagnostics
        (where the model looks); the kernels never materialise this matrix.
        """
        qkv = self.qkv(x)  # (B, T, 3H)
        q, k, _ = rearrange(qkv, "b t (three h d) -> three b h t d", three=3, h=self.num_heads)  # (B, nh, T, d)
        scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5  # (B, nh, T, T)
        bias = self.score_bias(x.shape[1], x.device)
        if bias is not None:
            scores = scores + bias
        if lengths is not None:
            pad = torch.arange(x.shape[1], device=x.device) >= lengths[:, None]  # (B, T) padded keys
            scores = scores.masked_fill(pad[:, None, None, :], float("-inf"))
        return scores.float().softmax(-1)  # (B, nh, T, T)


class TransformerLayer(nn.Module):
    """x -> LN(x + Drop(Attn(x))) -> LN(y + Drop(FFN(y))), FFN = Linear -> erf-GELU -> Linear.

    ``attention_backend`` is recorded with the other kernel switches when the layer is built
    (see ``audiorep.kernels.choose``).
    """

    def __init__(self, hidden_size: int, num_heads: int, intermediate_size: int,
                 dropout: float, attn_dropout: float, layer_norm_eps: float, attention_backend: str = "auto",
                 distance_bias: bool = False):
        super().__init__()
        self.kernels = choose(attention_backend)
        self.attn = SelfAttention(hidden_size, num_heads, attn_dropout, self.kernels, distance_bias)
        self.attn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.ffn_in = nn.Linear(hidden_size, intermediate_size)
        self.ffn_out = nn.Linear(intermediate_size, hidden_size)
        self.ffn_norm = nn.LayerNorm(hidden_size, eps=layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def _add_norm(self, x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """``norm(x + dropout(y))`` through the recorded LayerNorm backend (the reference unless measured faster)."""
        p = self.dropout.p if self.training else 0.0
        return add_layer_norm(x, y, norm.weight, norm.bias, norm.eps, p, backend=self.kernels.layer_norm)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None,
                attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        if fused.fusion_enabled(self.kernels, x, self.training):
            # Inference on CPU: bias, GELU and both residual adds ride inside the GEMMs (see kernels/fused.py).
            ctx = self.attn.context(x, lengths, attn_mask, fuse=True)  # (B, T, H)
            x = self.attn_norm(fused.linear(ctx, self.attn.out, residual=x))  # (B, T, H)
            h = fused.linear(x, self.ffn_in, gelu=True)  # (B, T, 4H)
            return self.ffn_norm(fused.linear(h, self.ffn_out, residual=x))  # (B, T, H)
        x = self._add_norm(x, self.attn(x, lengths, attn_mask), self.attn_norm)  # (B, T, H)
        h = F.gelu(fused.dense(x, self.ffn_in, self.kernels))  # (B, T, 4H); exact erf GELU as in BERT/Mockingjay
        return self._add_norm(x, fused.dense(h, self.ffn_out, self.kernels), self.ffn_norm)  # (B, T, H)

    def _add_norm_packed(self, x: torch.Tensor, y: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """:meth:`_add_norm` on packed frames; on CPU in training the dropout mask comes from random bits
        (``kernels.cpu_dropout``: a third of ``F.dropout``'s time), applied in the residual add itself."""
        p = self.dropout.p if self.training else 0.0
        if p > 0.0 and y.device.type == "cpu" and resolve_ln_backend(x, self.kernels.layer_norm, y) == "torch":
            z = torch.addcmul(x, y, dropout_scale_mask(tuple(y.shape), p, y.dtype, y.device))  # (N, H) one pass
            return F.layer_norm(z, (z.shape[-1],), norm.weight, norm.bias, norm.eps)
        return add_layer_norm(x, y, norm.weight, norm.bias, norm.eps, p, backend=self.kernels.layer_norm)

    def forward_packed(self, x: torch.Tensor, lens: list[int]) -> torch.Tensor:
        """The layer on utterances packed without padding: x (N, H), N = sum(lens) -> (N, H).

        Frame-wise parts (projections, FFN, LayerNorm, dropout) see only valid frames; attention runs per
        utterance. Per frame the arithmetic is the batched path's; in training, dropout draws its masks
        over the packed frames. Under no_grad in eval mode on CPU the linear layers are fused too.
        """
        fuse = fused.fusion_enabled(self.kernels, x, self.training)
        ctx = self.attn.context_packed(x, lens, fuse)  # (N, H)
        if not fuse:
            x = self._add_norm_packed(x, fused.dense(ctx, self.attn.out, self.kernels), self.attn_norm)  # (N, H)
            h = F.gelu(fused.dense(x, self.ffn_in, self.kernels))  # (N, 4H)
            return self._add_norm_packed(x, fused.dense(h, self.ffn_out, self.kernels), self.ffn_norm)  # (N, H)
        x = self.attn_norm(fused.linear(ctx, self.attn.out, residual=x))  # (N, H)
        h = fused.linear(x, self.ffn_in, gelu=True)  # (N, 4H)
        return self.ffn_norm(fused.linear(h, self.ffn_out, residual=x))  # (N, H)
