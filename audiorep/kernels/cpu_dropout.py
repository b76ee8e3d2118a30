"""Attention dropout on CPU without ``bernoulli_``: random bits -> a 0/scale mask, and the math attention that uses it.

On CPU, SDPA with ``dropout_p > 0`` runs its math fallback, whose dropout draws a Bernoulli float per score
(the slow part) and whose safe softmax adds isneginf/all/where passes over the scores. Here a mask costs one
``random_`` over int32 words (two 15-bit draws each, so half the draws) plus a compare, and an unmasked
sequence needs no safe softmax. docs/speed.md has the timings and the command that measures them.

The same math path takes an additive score bias (the distance bias of the small AALBERT configs) inside the
QK^T GEMM (``baddbmm``), where SDPA with a bias that needs a gradient also falls back to its math path, with
its safe-softmax passes, so this path is also the faster one for biased training attention (docs/speed.md).

Keep probability is quantised to 1/32768 (p = 0.1 drops with probability 3277/32768 = 0.100006); scaling by
1 / (1 - p) keeps the expectation. Draws come from torch's default CPU generator, so ``torch.manual_seed``
reproduces them.
"""

from __future__ import annotations

import math

import torch

_BITS = 15  # per int16 half of a random int32 word (random_ fills int32 with [0, 2**31), so 15 bits are safe)


def dropout_scale_mask(shape: tuple[int, ...], p: float, dtype: torch.dtype = torch.float32,
                       device: torch.device | str = "cpu") -> torch.Tensor:
    """A tensor of ``shape`` holding 0 (dropped, probability ~p) or ``1 / (1 - p)`` (kept)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must lie in [0, 1), got {p}")
    n = math.prod(shape)
    words = torch.empty((n + 1) // 2, dtype=torch.int32, device=device).random_()  # 2 draws per word
    bits = words.view(torch.int16)[:n].bitwise_and_(2 ** _BITS - 1)  # (n,) uniform in [0, 2**15)
    # the comparison writes 0/1 straight into the float mask: bool -> float is an unvectorised pass on CPU, and
    # writing the float result directly costs less than writing a bool result alone (docs/speed.md)
    mask = torch.empty(shape, dtype=dtype, device=device)
    torch.ge(bits.view(shape), round(p * 2 ** _BITS), out=mask)
    return mask.mul_(1.0 / (1.0 - p))


def attention_dropout(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float,
                      bias: torch.Tensor | None = None) -> torch.Tensor:
    """Unmasked attention with dropout on the probabilities: q, k, v (..., T, D) -> (..., T, D).

    ``softmax(q k^T / sqrt(D) + bias) * mask @ v``: the math SDPA computes, with the mask from
    :func:`dropout_scale_mask`. ``bias`` (broadcastable to (..., T, T)) is added by the QK^T GEMM itself.
    Autograd saves the probabilities and the mask, as the math path does.
    """
    scale = q.shape[-1] ** -0.5
    if bias is None:
        scores = torch.matmul(q * scale, k.transpose(-2, -1))  # (..., T, T)
    else:
        lead, T, S, D = q.shape[:-2], q.shape[-2], k.shape[-2], q.shape[-1]
        b = bias.to(q.dtype).expand(*lead, T, S).reshape(-1, T, S)  # (n, T, S); a view unless it broadcasts
        scores = torch.baddbmm(b, q.reshape(-1, T, D), k.reshape(-1, S, D).transpose(1, 2),
                               alpha=scale).view(*lead, T, S)  # (..., T, S)
    probs = torch.softmax(scores, dim=-1)
    if dropout_p > 0.0:
        probs = probs * dropout_scale_mask(tuple(probs.shape), dropout_p, probs.dtype, probs.device)
    return torch.matmul(probs, v)  # (..., T, D)
