"""CPU training attention for one unmasked utterance, its GEMMs in oneDNN, one head at a time.

``torch.matmul`` on (nh, T, T) batches calls MKL's batched GEMM, which on AMD processors takes the same slow
code path as its plain GEMM (see ``fused.py``). Here each head's four backward and two forward products go
through oneDNN's matmul on contiguous per-head copies of q, k and v (strided per-head views sent oneDNN to a
generic kernel far slower). The gain grows with the utterance: it is cache locality as much as the GEMM
library, since one head's (T, T) blocks stay in the last-level cache where all heads' scores, probabilities and
masks of a long utterance do not. Short utterances lose to the per-call overhead, so the dispatch sends only
utterances with at least ``MIN_SCORES`` scores (nh * T * T) here. The crossover and the gains per length are
measured in docs/speed.md (with the command that measures them); rerun it before moving ``MIN_SCORES``.

The arithmetic is ``cpu_dropout.attention_dropout``'s, which stays the reference: the dropout mask is drawn by
the same ``dropout_scale_mask`` call over all heads, so a seed gives the same mask on either path, and
results agree to float32 rounding (tests/kernels/test_cpu_dropout.py). Autograd keeps what the math path
keeps: per head the probabilities and, with dropout, the mask and the dropped probabilities.
"""

from __future__ import annotations

import torch

from .cpu_dropout import dropout_scale_mask
from .fused import onednn_mm

MIN_SCORES = 2 ** 20  # nh * T * T below this: the batched math path is as fast or faster (module doc)


class _HeadwiseAttention(torch.autograd.Function):
    """softmax(q k^T / sqrt(d) + bias) * mask @ v for q, k, v (1, nh, T, d); bias (nh, T, T) or None."""

    @staticmethod
    def forward(ctx, q, k, v, bias, dropout_p: float):
        scale = q.shape[-1] ** -0.5
        qs = (q[0] * scale).contiguous()  # (nh, T, d), pre-scaled: the scores need no extra pass
        k, v = k[0].contiguous(), v[0].contiguous()  # (nh, T, d)
        nh, T, _ = qs.shape
        mask = dropout_scale_mask((nh, T, T), dropout_p) if dropout_p > 0.0 else None  # (nh, T, T)
        out = torch.empty_like(qs)  # (nh, T, d)
        probs, dropped = [], []
        for h in range(nh):
            s = onednn_mm(qs[h], k[h])  # (T, T) scores
            if bias is not None:
                s.add_(bias[h])
            p = torch.softmax(s, dim=-1)  # (T, T)
            pd = p * mask[h] if mask is not None else p  # (T, T)
            out[h] = onednn_mm(pd, v[h].t())  # (T, d)
            probs.append(p)
            dropped.append(pd)
        ctx.save_for_backward(qs, k, v, mask)
        ctx.probs, ctx.dropped = probs, dropped
        ctx.scale = scale
        return out.unsqueeze(0)  # (1, nh, T, d)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g_out):
        if ctx.probs is None:
            raise RuntimeError("headwise attention frees its probabilities in backward: a second backward "
                               "through the same graph is not supported")
        qs, k, v, mask = ctx.saved_tensors
        g_out = g_out[0]  # (nh, T, d)
        nh, T, _ = qs.shape
        gq, gk, gv = torch.empty_like(qs), torch.empty_like(k), torch.empty_like(v)  # (nh, T, d)
        gb = torch.empty(nh, T, T, dtype=qs.dtype) if ctx.needs_input_grad[3] else None  # False without a bias
        for h in range(nh):
            p, pd = ctx.probs[h], ctx.dropped[h]
            go = g_out[h].contiguous()  # (T, d)
            gv[h] = onednn_mm(go.t(), pd.t()).t()  # dV = pd^T dO, as (dO^T pd)^T
            gp = onednn_mm(go, v[h])  # (T, T) = dO V^T
            if mask is not None:
                gp.mul_(mask[h])
            gs = torch.ops.aten._softmax_backward_data(gp, p, -1, p.dtype)  # (T, T) d scores
            if gb is not None:
                gb[h] = gs
            gq[h] = onednn_mm(gs, k[h].t())  # dQs = dS K
            gk[h] = onednn_mm(qs[h].t(), gs.t()).t()  # dK = dS^T Qs, as (Qs^T dS)^T
        ctx.probs = ctx.dropped = None  # free the (T, T) blocks now, not when the whole graph goes
        return (gq.mul_(ctx.scale).unsqueeze(0), gk.unsqueeze(0), gv.unsqueeze(0), gb, None)


def headwise_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
                       bias: torch.Tensor | None = None) -> torch.Tensor:
    """Attention over one whole utterance: q, k, v (1, nh, T, d) -> (1, nh, T, d), bias (nh, T, T) or None.

    The same function as ``cpu_dropout.attention_dropout`` (fp32 CPU tensors), its GEMMs in oneDNN.
    """
    if bias is not None:
        bias = bias.to(q.dtype).expand(q.shape[1], q.shape[2], k.shape[2])  # (nh, T, T)
    return _HeadwiseAttention.apply(q, k, v, bias, dropout_p)
