"""Variable-length bidirectional attention in Triton: forward and backward, online softmax, fp32 accumulation.

Imported lazily by ``audiorep.kernels.dispatch`` (``import audiorep`` never imports Triton).

What it computes, for q, k, v of shape (B, H, T, D) and per-utterance valid lengths L_b:

* ``out[b, h, i] = sum_j softmax_j(q_i . k_j * scale) v_j`` over keys ``j < L_b`` only;
* query rows ``i >= L_b`` return **zeros** (same as ``attention_reference``), and they send no gradient
  into q, k or v;
* whole key tiles at or past ``L_b`` are never loaded, and query tiles starting at or past ``L_b`` do no
  work beyond writing their zeros, so a ragged batch costs what its valid tokens cost, not what the
  padding costs. The same holds in the backward pass.

Precision: fp16 and bf16 inputs use tensor-core dots with fp32 accumulation and an fp32 softmax; the
output is cast back to the input dtype. fp32 inputs are accepted and use IEEE fp32 dots (no TF32), so
they match the fp32 reference closely. Head dims 16, 32, 64 and 128. Self-attention only (q, k, v share T).
Inputs may be strided views (e.g. the q/k/v slices of one fused QKV projection) as long as the head
dim is contiguous; the output is laid out as (B, T, H, D) memory viewed as (B, H, T, D), so merging the
heads afterwards is free.

Dropout is **fused**: a keep mask is drawn per (batch*head, query, key) element from Triton's counter-based
Philox generator, keyed by a 64-bit seed tensor drawn with ``torch.randint`` (so ``torch.manual_seed``
makes runs repeatable, and no host sync is needed). The backward pass regenerates the same mask from the
same seed instead of storing a (T, T) mask. Kept probabilities are scaled by 1 / (1 - p) as in
``torch.nn.functional.dropout``. The random stream differs from SDPA's, so results with dropout agree
with other backends in distribution, not bit for bit; ``dropout_keep_mask`` reproduces the mask for tests.

Backward follows FlashAttention-2: a small kernel computes ``delta_i = sum_d dO_i * O_i``; one kernel per
key tile accumulates dK and dV over the query tiles; one kernel per query tile accumulates dQ over the
key tiles (two passes instead of atomics keeps the result deterministic). The log-sum-exp of each row is
saved by the forward pass (base 2, fp32) so nothing (T, T) is ever stored.

The op is registered as ``audiorep::varlen_attention`` with ``torch.library.custom_op``, a fake (meta)
implementation and ``register_autograd`` (which builds the autograd.Function for it), so ``torch.compile``
traces through it without graph breaks.

Under ``TRITON_INTERPRET=1`` the kernels run on CPU tensors with small fixed tiles (tests). The
interpreter cannot do bf16 dots (numpy has no bf16), so there bf16 tiles are upcast to fp32 before
each dot; on GPU bf16 dots run natively.
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import triton
import triton.language as tl

from .config import kernel_config
from .capabilities import TRITON_DTYPES as SUPPORTED_DTYPES, TRITON_HEAD_DIMS as SUPPORTED_HEAD_DIMS


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (tests; the kernel config's switch)."""
    return kernel_config().triton_interpret


def _patch_interpreter_index() -> None:
    """Let the Triton 3.6 interpreter use a loaded scalar as a loop bound under numpy >= 2.4.

    The interpreter keeps scalars as 1-element arrays and converts them with ``int(array)``, which numpy
    2.4 refuses for arrays that are not 0-d; the compiled GPU path is unaffected. We wrap its tensor
    patching so ``__index__`` reads the single element instead.
    """
    from triton.runtime import interpreter

    if getattr(interpreter, "_audiorep_index_patch", False):
        return
    original = interpreter._patch_lang_tensor

    def patched(tensor, scope):
        original(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0]))

    interpreter._patch_lang_tensor = patched
    interpreter._audiorep_index_patch = True


if interpreting():
    _patch_interpreter_index()


# --------------------------------------------------------------------------------------------------
# device helpers
# --------------------------------------------------------------------------------------------------

@triton.jit
def _mm(a, b, UPCAST: tl.constexpr):
    """a @ b with an fp32 accumulator; UPCAST does it in IEEE fp32 (fp32 inputs, or bf16 in the interpreter)."""
    if UPCAST:
        acc = tl.dot(a.to(tl.float32), b.to(tl.float32), input_precision="ieee")
    else:
        acc = tl.dot(a, b)
    return acc


@triton.jit
def _keep(seed, bh, T, rows, cols, dropout_p):
    """Dropout keep mask for (rows x cols) of one (batch*head): the same bits in forward and backward.

    The Philox counter is the element's flat index in the (BH, T, T) score tensor (int64, so long
    utterances with many heads never wrap)."""
    base = bh.to(tl.int64) * T * T
    offs = base + rows.to(tl.int64) * T + cols.to(tl.int64)
    return tl.rand(seed, offs) >= dropout_p


@triton.jit
def _seqlen(LENS, b, T, HAS_LENS: tl.constexpr):
    if HAS_LENS:
        n = tl.load(LENS + b)
        n = tl.minimum(tl.maximum(n, 0), T)  # tolerate out-of-range lengths instead of reading past T
    else:
        n = T
    return n


# --------------------------------------------------------------------------------------------------
# forward
# --------------------------------------------------------------------------------------------------

@triton.jit
def _fwd_kernel(
    Q, K, V, O, LSE, LENS, SEED,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sob, soh, sot,
    H, T, T_BUCKET, sm_scale, dropout_p,
    HAS_LENS: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
    HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    seqlen = _seqlen(LENS, b, T, HAS_LENS)
    start_m = pid_m * BLOCK_M

    offs_m = start_m + tl.arange(0, BLOCK_M)  # (M,)
    offs_n = tl.arange(0, BLOCK_N)  # (N,)
    offs_d = tl.arange(0, HEAD_D)  # (D,)
    row_ok = offs_m < seqlen  # (M,)

    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :],
                mask=row_ok[:, None], other=0.0)  # (M, D)
    k_base = K + b * skb + h * skh + offs_d[None, :]
    v_base = V + b * svb + h * svh + offs_d[None, :]

    qk_scale = sm_scale * 1.4426950408889634  # softmax in base 2: exp(x) = exp2(x * log2 e)
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max (base-2 units)
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running row sum of exp2
    acc = tl.zeros([BLOCK_M, HEAD_D], tl.float32)
    if DROPOUT:
        seed = tl.load(SEED)

    # Query tiles that start past the length do no work; key tiles past the length are never visited.
    n_end = tl.where(start_m < seqlen, seqlen, 0)
    for start_n in range(0, n_end, BLOCK_N):
        cols = start_n + offs_n  # (N,)
        col_ok = cols < seqlen
        k = tl.load(k_base + cols[:, None] * skt, mask=col_ok[:, None], other=0.0)  # (N, D)
        v = tl.load(v_base + cols[:, None] * svt, mask=col_ok[:, None], other=0.0)  # (N, D)
        s = _mm(q, tl.trans(k), UPCAST) * qk_scale  # (M, N)
        s = tl.where(col_ok[None, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))  # finite: every visited tile holds a valid key
        p = tl.math.exp2(s - m_new[:, None])  # (M, N)
        alpha = tl.math.exp2(m_i - m_new)
        l_i = l_i * alpha + tl.sum(p, 1)  # the normaliser uses undropped probabilities
        acc = acc * alpha[:, None]
        if DROPOUT:
            p = tl.where(_keep(seed, bh, T, offs_m[:, None], cols[None, :], dropout_p), p, 0.0)
        acc += _mm(p.to(v.dtype), v, UPCAST)
        m_i = m_new

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    out = acc / l_safe[:, None]
    if DROPOUT:
        out = out * (1.0 / (1.0 - dropout_p))
    out = tl.where(row_ok[:, None], out, 0.0)  # rows past the length are defined as zeros
    tl.store(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :],
             out.to(O.dtype.element_ty), mask=(offs_m < T)[:, None])
    lse = tl.where(row_ok, m_i + tl.math.log2(l_safe), 0.0)  # base-2 log-sum-exp of the scaled scores
    tl.store(LSE + bh.to(tl.int64) * T + offs_m, lse, mask=offs_m < T)


# --------------------------------------------------------------------------------------------------
# backward
# --------------------------------------------------------------------------------------------------

@triton.jit
def _bwd_delta_kernel(
    O, DO, DELTA, sob, soh, sot, sdb, sdh, sdt, H, T,
    HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr,
):
    """delta_i = sum_d dO_i,d * O_i,d (fp32): the row term of the softmax gradient."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HEAD_D)
    mask = (offs_m < T)[:, None]
    o = tl.load(O + b * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :], mask=mask, other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_d[None, :], mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), 1)  # (M,)
    tl.store(DELTA + bh.to(tl.int64) * T + offs_m, delta, mask=offs_m < T)


@triton.jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, LENS, SEED,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt,
    s_dkb, s_dkh, s_dkt, s_dvb, s_dvh, s_dvt,
    H, T, T_BUCKET, sm_scale, dropout_p,
    HAS_LENS: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
    HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One key tile per program: dV = sum_i P^T dO, dK = scale * sum_i dS^T Q over the valid query tiles."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    seqlen = _seqlen(LENS, b, T, HAS_LENS)
    start_n = pid_n * BLOCK_N

    offs_n = start_n + tl.arange(0, BLOCK_N)  # (N,)
    offs_m = tl.arange(0, BLOCK_M)  # (M,)
    offs_d = tl.arange(0, HEAD_D)
    col_ok = offs_n < seqlen
    k = tl.load(K + b * skb + h * skh + offs_n[:, None] * skt + offs_d[None, :], mask=col_ok[:, None], other=0.0)
    v = tl.load(V + b * svb + h * svh + offs_n[:, None] * svt + offs_d[None, :], mask=col_ok[:, None], other=0.0)
    q_base = Q + b * sqb + h * sqh + offs_d[None, :]
    do_base = DO + b * sdb + h * sdh + offs_d[None, :]
    row_base = bh.to(tl.int64) * T

    qk_scale = sm_scale * 1.4426950408889634
    dk = tl.zeros([BLOCK_N, HEAD_D], tl.float32)
    dv = tl.zeros([BLOCK_N, HEAD_D], tl.float32)
    if DROPOUT:
        seed = tl.load(SEED)
        inv_keep = 1.0 / (1.0 - dropout_p)

    m_end = tl.where(start_n < seqlen, seqlen, 0)  # key tiles past the length get zero gradient, no work
    for start_m in range(0, m_end, BLOCK_M):
        rows = start_m + offs_m  # (M,)
        row_ok = rows < seqlen
        q = tl.load(q_base + rows[:, None] * sqt, mask=row_ok[:, None], other=0.0)  # (M, D)
        do = tl.load(do_base + rows[:, None] * sdt, mask=row_ok[:, None], other=0.0)  # (M, D)
        lse = tl.load(LSE + row_base + rows, mask=row_ok, other=0.0)  # (M,)
        delta = tl.load(DELTA + row_base + rows, mask=row_ok, other=0.0)  # (M,)
        s_t = _mm(k, tl.trans(q), UPCAST) * qk_scale  # (N, M), transposed scores
        p_t = tl.math.exp2(s_t - lse[None, :])
        p_t = tl.where(col_ok[:, None] & row_ok[None, :], p_t, 0.0)
        dp_t = _mm(v, tl.trans(do), UPCAST)  # (N, M) = (dO V^T)^T
        if DROPOUT:
            keep_t = _keep(seed, bh, T, rows[None, :], offs_n[:, None], dropout_p)
            dv += _mm((tl.where(keep_t, p_t, 0.0) * inv_keep).to(do.dtype), do, UPCAST)
            dp_t = tl.where(keep_t, dp_t, 0.0) * inv_keep
        else:
            dv += _mm(p_t.to(do.dtype), do, UPCAST)
        ds_t = p_t * (dp_t - delta[None, :])  # (N, M) gradient w.r.t. the scaled scores
        dk += _mm(ds_t.to(q.dtype), q, UPCAST)

    dk = dk * sm_scale
    store_ok = (offs_n < T)[:, None]
    tl.store(DK + b * s_dkb + h * s_dkh + offs_n[:, None] * s_dkt + offs_d[None, :],
             dk.to(DK.dtype.element_ty), mask=store_ok)
    tl.store(DV + b * s_dvb + h * s_dvh + offs_n[:, None] * s_dvt + offs_d[None, :],
             dv.to(DV.dtype.element_ty), mask=store_ok)


@triton.jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, LENS, SEED,
    sqb, sqh, sqt, skb, skh, skt, svb, svh, svt, sdb, sdh, sdt, s_dqb, s_dqh, s_dqt,
    H, T, T_BUCKET, sm_scale, dropout_p,
    HAS_LENS: tl.constexpr, DROPOUT: tl.constexpr, UPCAST: tl.constexpr,
    HEAD_D: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    """One query tile per program: dQ = scale * sum_j dS K over the valid key tiles."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    seqlen = _seqlen(LENS, b, T, HAS_LENS)
    start_m = pid_m * BLOCK_M

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HEAD_D)
    row_ok = offs_m < seqlen
    q = tl.load(Q + b * sqb + h * sqh + offs_m[:, None] * sqt + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    do = tl.load(DO + b * sdb + h * sdh + offs_m[:, None] * sdt + offs_d[None, :], mask=row_ok[:, None], other=0.0)
    row_base = bh.to(tl.int64) * T
    lse = tl.load(LSE + row_base + offs_m, mask=row_ok, other=0.0)
    delta = tl.load(DELTA + row_base + offs_m, mask=row_ok, other=0.0)
    k_base = K + b * skb + h * skh + offs_d[None, :]
    v_base = V + b * svb + h * svh + offs_d[None, :]

    qk_scale = sm_scale * 1.4426950408889634
    dq = tl.zeros([BLOCK_M, HEAD_D], tl.float32)
    if DROPOUT:
        seed = tl.load(SEED)
        inv_keep = 1.0 / (1.0 - dropout_p)

    n_end = tl.where(start_m < seqlen, seqlen, 0)
    for start_n in range(0, n_end, BLOCK_N):
        cols = start_n + offs_n
        col_ok = cols < seqlen
        k = tl.load(k_base + cols[:, None] * skt, mask=col_ok[:, None], other=0.0)  # (N, D)
        v = tl.load(v_base + cols[:, None] * svt, mask=col_ok[:, None], other=0.0)  # (N, D)
        s = _mm(q, tl.trans(k), UPCAST) * qk_scale  # (M, N)
        p = tl.math.exp2(s - lse[:, None])
        p = tl.where(row_ok[:, None] & col_ok[None, :], p, 0.0)
        dp = _mm(do, tl.trans(v), UPCAST)  # (M, N)
        if DROPOUT:
            keep = _keep(seed, bh, T, offs_m[:, None], cols[None, :], dropout_p)
            dp = tl.where(keep, dp, 0.0) * inv_keep
        ds = p * (dp - delta[:, None])
        dq += _mm(ds.to(k.dtype), k, UPCAST)

    dq = dq * sm_scale
    tl.store(DQ + b * s_dqb + h * s_dqh + offs_m[:, None] * s_dqt + offs_d[None, :],
             dq.to(DQ.dtype.element_ty), mask=(offs_m < T)[:, None])


@triton.jit
def _keep_mask_kernel(OUT, SEED, H, T, dropout_p, BLOCK: tl.constexpr):
    """Writes the dropout keep mask the attention kernels use (tests compare against it)."""
    bh = tl.program_id(0)
    pid_m = tl.program_id(1)
    rows = pid_m * BLOCK + tl.arange(0, BLOCK)
    seed = tl.load(SEED)
    for start_n in range(0, T, BLOCK):
        cols = start_n + tl.arange(0, BLOCK)
        keep = _keep(seed, bh, T, rows[:, None], cols[None, :], dropout_p)
        ok = (rows < T)[:, None] & (cols < T)[None, :]
        tl.store(OUT + bh.to(tl.int64) * T * T + rows[:, None] * T + cols[None, :], keep.to(tl.int8), mask=ok)


# --------------------------------------------------------------------------------------------------
# launch configuration
# --------------------------------------------------------------------------------------------------

# Candidate tiles for the GPU autotuner, keyed per head dim and T bucket (not per exact T: speech
# batches change T every step and re-tuning each time would cost more than it saves).
_FWD_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(128, 64, 4, 3), (128, 128, 8, 3), (128, 64, 8, 4), (64, 64, 4, 3), (128, 32, 4, 4)]
]
_DKDV_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(32, 128, 4, 3), (64, 128, 8, 3), (64, 64, 4, 3), (32, 64, 4, 3)]
]
_DQ_CONFIGS = [
    triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=s)
    for bm, bn, w, s in [(128, 32, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (64, 32, 4, 3)]
]
_TUNE_KEY = ["HEAD_D", "UPCAST", "DROPOUT", "T_BUCKET"]
_INTERP_BLOCK = 16  # tiny tiles in the interpreter so small test shapes still span several tiles
_tuned: dict[str, object] = {}


def _kernel(name: str):
    """The launchable kernel: autotuned on GPU, the raw kernel (fixed tiles) under the interpreter."""
    raw = {"fwd": _fwd_kernel, "dkdv": _bwd_dkdv_kernel, "dq": _bwd_dq_kernel}[name]
    if interpreting():
        return raw, {"BLOCK_M": _INTERP_BLOCK, "BLOCK_N": _INTERP_BLOCK}
    if name not in _tuned:
        configs = {"fwd": _FWD_CONFIGS, "dkdv": _DKDV_CONFIGS, "dq": _DQ_CONFIGS}[name]
        _tuned[name] = triton.autotune(configs=configs, key=_TUNE_KEY)(raw)
    return _tuned[name], {}


def _t_bucket(T: int) -> int:
    return max(256, triton.next_power_of_2(T))


def _strides(x: torch.Tensor) -> tuple[int, int, int]:
    return x.stride(0), x.stride(1), x.stride(2)


def _grid_m(block_key: str, T: int, BH: int):
    return lambda meta: (triton.cdiv(T, meta[block_key]), BH)


def _empty_bthd(q: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """(B, H, T, D) view of (B, T, H, D) memory: heads merge back into (B, T, H*D) without a copy."""
    B, H, T, D = q.shape
    return torch.empty(B, T, H, D, dtype=dtype or q.dtype, device=q.device).transpose(1, 2)


def _flags(q: torch.Tensor, lengths: Optional[torch.Tensor], dropout_p: float) -> dict:
    upcast = q.dtype == torch.float32 or (interpreting() and q.dtype == torch.bfloat16)
    return {"HAS_LENS": lengths is not None, "DROPOUT": dropout_p > 0.0, "UPCAST": upcast, "HEAD_D": q.shape[-1]}


# --------------------------------------------------------------------------------------------------
# launchers (plain functions on tensors; the custom ops below wrap them)
# --------------------------------------------------------------------------------------------------

def _forward(q, k, v, lengths, seed, dropout_p: float, scale: float):
    B, H, T, D = q.shape
    o = _empty_bthd(q)
    lse = torch.empty(B, H, T, dtype=torch.float32, device=q.device)
    kern, fixed = _kernel("fwd")
    dummy = lse  # any pointer: never read when the matching flag is off
    kern[_grid_m("BLOCK_M", T, B * H)](
        q, k, v, o, lse, lengths if lengths is not None else dummy, seed if seed is not None else dummy,
        *_strides(q), *_strides(k), *_strides(v), *_strides(o),
        H, T, _t_bucket(T), scale, dropout_p, **_flags(q, lengths, dropout_p), **fixed,
    )
    return o, lse


def _backward(do, q, k, v, o, lse, lengths, seed, dropout_p: float, scale: float):
    B, H, T, D = q.shape
    if do.stride(-1) != 1:
        do = do.contiguous()
    delta = torch.empty(B, H, T, dtype=torch.float32, device=q.device)
    block = _INTERP_BLOCK if interpreting() else 64
    _bwd_delta_kernel[(triton.cdiv(T, block), B * H)](
        o, do, delta, *_strides(o), *_strides(do), H, T, HEAD_D=D, BLOCK_M=block,
    )
    dq, dk, dv = _empty_bthd(q), _empty_bthd(k), _empty_bthd(v)
    flags = _flags(q, lengths, dropout_p)
    lens = lengths if lengths is not None else delta
    sd = seed if seed is not None else delta
    kern, fixed = _kernel("dkdv")
    kern[_grid_m("BLOCK_N", T, B * H)](
        q, k, v, do, lse, delta, dk, dv, lens, sd,
        *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dk), *_strides(dv),
        H, T, _t_bucket(T), scale, dropout_p, **flags, **fixed,
    )
    kern, fixed = _kernel("dq")
    kern[_grid_m("BLOCK_M", T, B * H)](
        q, k, v, do, lse, delta, dq, lens, sd,
        *_strides(q), *_strides(k), *_strides(v), *_strides(do), *_strides(dq),
        H, T, _t_bucket(T), scale, dropout_p, **flags, **fixed,
    )
    return dq, dk, dv


# --------------------------------------------------------------------------------------------------
# torch.library registration: traceable by torch.compile, differentiable through register_autograd
# --------------------------------------------------------------------------------------------------

@torch.library.custom_op("audiorep::varlen_attention", mutates_args=())
def varlen_attention_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, lengths: Optional[torch.Tensor],
    seed: Optional[torch.Tensor], dropout_p: float, scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: (out (B, H, T, D) in q's dtype, row log-sum-exp (B, H, T) fp32, base 2)."""
    return _forward(q, k, v, lengths, seed, dropout_p, scale)


@varlen_attention_op.register_fake
def _(q, k, v, lengths, seed, dropout_p, scale):
    B, H, T, D = q.shape
    return _empty_bthd(q), q.new_empty(B, H, T, dtype=torch.float32)


@torch.library.custom_op("audiorep::varlen_attention_backward", mutates_args=())
def varlen_attention_backward_op(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor, lse: torch.Tensor,
    lengths: Optional[torch.Tensor], seed: Optional[torch.Tensor], dropout_p: float, scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Backward: (dq, dk, dv), each (B, H, T, D) in the input dtype."""
    return _backward(do, q, k, v, o, lse, lengths, seed, dropout_p, scale)


@varlen_attention_backward_op.register_fake
def _(do, q, k, v, o, lse, lengths, seed, dropout_p, scale):
    return _empty_bthd(q), _empty_bthd(k), _empty_bthd(v)


def _setup_context(ctx, inputs, output):
    q, k, v, lengths, seed, dropout_p, scale = inputs
    o, lse = output
    ctx.save_for_backward(q, k, v, o, lse, lengths, seed)
    ctx.dropout_p = dropout_p
    ctx.scale = scale


def _backward_rule(ctx, grad_out, grad_lse):
    q, k, v, o, lse, lengths, seed = ctx.saved_tensors
    dq, dk, dv = varlen_attention_backward_op(grad_out, q, k, v, o, lse, lengths, seed, ctx.dropout_p, ctx.scale)
    return dq, dk, dv, None, None, None, None


varlen_attention_op.register_autograd(_backward_rule, setup_context=_setup_context)


# --------------------------------------------------------------------------------------------------
# public entry point
# --------------------------------------------------------------------------------------------------

def check_inputs(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> None:
    """Raise a ValueError naming the argument when the kernel cannot take these tensors."""
    if q.dim() != 4 or q.shape != k.shape or q.shape != v.shape:
        raise ValueError(
            f"triton attention: q, k, v must share one (B, H, T, D) shape, got "
            f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}"
        )
    if q.dtype not in SUPPORTED_DTYPES or k.dtype != q.dtype or v.dtype != q.dtype:
        raise ValueError(f"triton attention: dtype must be one of fp16/bf16/fp32 and equal for q, k, v; "
                         f"got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] not in SUPPORTED_HEAD_DIMS:
        raise ValueError(f"triton attention: head dim {q.shape[-1]} not supported; use one of {SUPPORTED_HEAD_DIMS}")
    if not q.is_cuda and not interpreting():
        raise ValueError("triton attention needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tests)")


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    lengths: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    scale: float | None = None,
) -> torch.Tensor:
    """Variable-length bidirectional attention. q, k, v: (B, H, T, D); lengths: (B,) valid frames or None.

    Returns (B, H, T, D) in q's dtype; rows at or past a length are zeros. Differentiable in q, k, v.
    """
    check_inputs(q, k, v)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"triton attention: dropout_p must lie in [0, 1), got {dropout_p}")
    q, k, v = (x if x.stride(-1) == 1 else x.contiguous() for x in (q, k, v))
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    if lengths is not None:
        if lengths.shape != (q.shape[0],):
            raise ValueError(f"triton attention: lengths must have shape ({q.shape[0]},), got {tuple(lengths.shape)}")
        lengths = lengths.to(device=q.device, dtype=torch.int32)
    seed = None
    if dropout_p > 0.0:
        # drawn on the device from torch's generator: repeatable under manual_seed, no host sync
        seed = torch.randint(0, 2**62, (1,), device=q.device, dtype=torch.int64)
    out, _ = varlen_attention_op(q, k, v, lengths, seed, float(dropout_p), scale)
    return out


def dropout_keep_mask(seed: torch.Tensor, B: int, H: int, T: int, dropout_p: float) -> torch.Tensor:
    """(B, H, T, T) bool: the keep mask the kernels draw for this seed (for tests and debugging)."""
    out = torch.empty(B * H, T, T, dtype=torch.int8, device=seed.device)
    block = 16
    _keep_mask_kernel[(B * H, triton.cdiv(T, block))](out, seed, H, T, dropout_p, BLOCK=block)
    return out.view(B, H, T, T).bool()
