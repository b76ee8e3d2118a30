"""Fused dropout + residual add + LayerNorm in Triton: ``LN(x + dropout(y))``, forward and backward.

Why this op: every post-LN transformer layer of Mockingjay/TERA/AALBERT ends its two sub-blocks with it
(plus one in the prediction head). Unfused, PyTorch runs dropout (reads y, writes the result and a mask),
the add (reads two, writes one) and LayerNorm (reads one, writes one) -- about seven passes over a
(B*T, H) tensor; the fused kernel reads x and y once and writes the output and the sum z once (z is kept
for the backward pass), and the backward regenerates the dropout mask from the seed instead of storing it.

Semantics (``audiorep.kernels.layer_norm.add_layer_norm_reference`` is the ground truth):
``z = x + y * keep / (1 - p)``, ``out = (z - mean(z)) / sqrt(var(z) + eps) * weight + bias`` over the last
dim, statistics in fp32. Output dtype = promote(x, y, weight) -- fp32 under autocast with fp32 weights,
exactly as autocast's fp32 ``layer_norm`` gives. The keep mask is Philox on (row * H + col) with a seed
drawn by ``torch.randint`` (repeatable under ``torch.manual_seed``); it differs from PyTorch's stream.

Registered as ``audiorep::add_layer_norm`` (custom op + fake + autograd) so ``torch.compile`` traces it.
Imported lazily, like the attention kernel.
"""

from __future__ import annotations

from typing import Optional

import torch
import triton
import triton.language as tl

from .triton_attention import interpreting  # also applies the interpreter compatibility patch


@triton.jit
def _keep(seed, rows, cols, H, dropout_p):
    return tl.rand(seed, rows.to(tl.int64) * H + cols) >= dropout_p


@triton.jit
def _add_ln_fwd_kernel(
    X, Y, W, B, OUT, Z, MEAN, RSTD, SEED, H, eps, dropout_p,
    DROPOUT: tl.constexpr, BLOCK_H: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK_H)
    ok = cols < H
    x = tl.load(X + row * H + cols, mask=ok, other=0.0).to(tl.float32)
    y = tl.load(Y + row * H + cols, mask=ok, other=0.0).to(tl.float32)
    if DROPOUT:
        seed = tl.load(SEED)
        y = tl.where(_keep(seed, row, cols, H, dropout_p), y * (1.0 / (1.0 - dropout_p)), 0.0)
    z = x + y
    z_store = z.to(Z.dtype.element_ty)
    tl.store(Z + row * H + cols, z_store, mask=ok)
    z = z_store.to(tl.float32)  # normalise exactly what the backward pass will see
    mean = tl.sum(z, 0) / H
    zc = tl.where(ok, z - mean, 0.0)
    var = tl.sum(zc * zc, 0) / H
    rstd = 1.0 / tl.sqrt(var + eps)
    w = tl.load(W + cols, mask=ok, other=0.0).to(tl.float32)
    b = tl.load(B + cols, mask=ok, other=0.0).to(tl.float32)
    tl.store(OUT + row * H + cols, (zc * rstd * w + b).to(OUT.dtype.element_ty), mask=ok)
    tl.store(MEAN + row, mean)
    tl.store(RSTD + row, rstd)


@triton.jit
def _add_ln_bwd_kernel(
    DOUT, Z, W, MEAN, RSTD, DX, DY, DW_PART, DB_PART, SEED, N, H, dropout_p,
    DROPOUT: tl.constexpr, BLOCK_H: tl.constexpr, ROWS: tl.constexpr,
):
    """ROWS rows per program; per-program partial sums of dW and dB (summed by the caller: deterministic)."""
    pid = tl.program_id(0)
    cols = tl.arange(0, BLOCK_H)
    ok = cols < H
    w = tl.load(W + cols, mask=ok, other=0.0).to(tl.float32)
    dw = tl.zeros([BLOCK_H], tl.float32)
    db = tl.zeros([BLOCK_H], tl.float32)
    if DROPOUT:
        seed = tl.load(SEED)
    for i in range(ROWS):
        row = pid.to(tl.int64) * ROWS + i
        if row < N:
            dout = tl.load(DOUT + row * H + cols, mask=ok, other=0.0).to(tl.float32)
            z = tl.load(Z + row * H + cols, mask=ok, other=0.0).to(tl.float32)
            mean = tl.load(MEAN + row)
            rstd = tl.load(RSTD + row)
            xhat = tl.where(ok, (z - mean) * rstd, 0.0)
            g = dout * w
            c1 = tl.sum(g, 0) / H
            c2 = tl.sum(g * xhat, 0) / H
            dz = (g - c1 - xhat * c2) * rstd
            dz = tl.where(ok, dz, 0.0)
            tl.store(DX + row * H + cols, dz.to(DX.dtype.element_ty), mask=ok)
            if DROPOUT:
                dy = tl.where(_keep(seed, row, cols, H, dropout_p), dz * (1.0 / (1.0 - dropout_p)), 0.0)
            else:
                dy = dz
            tl.store(DY + row * H + cols, dy.to(DY.dtype.element_ty), mask=ok)
            dw += dout * xhat
            db += dout
    tl.store(DW_PART + pid.to(tl.int64) * H + cols, dw, mask=ok)
    tl.store(DB_PART + pid.to(tl.int64) * H + cols, db, mask=ok)


def _warps(block_h: int) -> int:
    return min(max(block_h // 256, 1), 8)


def _out_dtype(x, y, weight) -> torch.dtype:
    return torch.promote_types(torch.promote_types(x.dtype, y.dtype), weight.dtype)


@torch.library.custom_op("audiorep::add_layer_norm", mutates_args=())
def add_layer_norm_op(
    x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, seed: Optional[torch.Tensor],
    eps: float, dropout_p: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(out, z, mean, rstd) for contiguous (N, H) x and y."""
    N, H = x.shape
    dtype = _out_dtype(x, y, weight)
    out = torch.empty(N, H, dtype=dtype, device=x.device)
    z = torch.empty(N, H, dtype=dtype, device=x.device)
    mean = torch.empty(N, dtype=torch.float32, device=x.device)
    rstd = torch.empty(N, dtype=torch.float32, device=x.device)
    block = triton.next_power_of_2(H)
    extra = {} if interpreting() else {"num_warps": _warps(block)}
    _add_ln_fwd_kernel[(N,)](x, y, weight, bias, out, z, mean, rstd, seed if seed is not None else mean,
                             H, eps, dropout_p, DROPOUT=dropout_p > 0.0, BLOCK_H=block, **extra)
    return out, z, mean, rstd


@add_layer_norm_op.register_fake
def _(x, y, weight, bias, seed, eps, dropout_p):
    N, H = x.shape
    dtype = _out_dtype(x, y, weight)
    return (x.new_empty(N, H, dtype=dtype), x.new_empty(N, H, dtype=dtype),
            x.new_empty(N, dtype=torch.float32), x.new_empty(N, dtype=torch.float32))


@torch.library.custom_op("audiorep::add_layer_norm_backward", mutates_args=())
def add_layer_norm_backward_op(
    dout: torch.Tensor, z: torch.Tensor, weight: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor,
    seed: Optional[torch.Tensor], dropout_p: float, x_dtype: torch.dtype, y_dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx, dy, dweight, dbias)."""
    N, H = z.shape
    dout = dout.contiguous()
    rows = 4 if interpreting() else 64
    n_prog = max(1, triton.cdiv(N, rows))
    dx = torch.empty(N, H, dtype=x_dtype, device=z.device)
    dy = torch.empty(N, H, dtype=y_dtype, device=z.device)
    dw_part = torch.empty(n_prog, H, dtype=torch.float32, device=z.device)
    db_part = torch.empty(n_prog, H, dtype=torch.float32, device=z.device)
    block = triton.next_power_of_2(H)
    extra = {} if interpreting() else {"num_warps": _warps(block)}
    _add_ln_bwd_kernel[(n_prog,)](dout, z, weight, mean, rstd, dx, dy, dw_part, db_part,
                                  seed if seed is not None else mean, N, H, dropout_p,
                                  DROPOUT=dropout_p > 0.0, BLOCK_H=block, ROWS=rows, **extra)
    return dx, dy, dw_part.sum(0).to(weight.dtype), db_part.sum(0).to(weight.dtype)


@add_layer_norm_backward_op.register_fake
def _(dout, z, weight, mean, rstd, seed, dropout_p, x_dtype, y_dtype):
    N, H = z.shape
    return (z.new_empty(N, H, dtype=x_dtype), z.new_empty(N, H, dtype=y_dtype),
            weight.new_empty(H), weight.new_empty(H))


def _setup_context(ctx, inputs, output):
    x, y, weight, bias, seed, eps, dropout_p = inputs
    out, z, mean, rstd = output
    ctx.save_for_backward(z, weight, mean, rstd, seed)
    ctx.dropout_p = dropout_p
    ctx.x_dtype, ctx.y_dtype = x.dtype, y.dtype


def _backward_rule(ctx, dout, dz_unused, dmean_unused, drstd_unused):
    z, weight, mean, rstd, seed = ctx.saved_tensors
    dx, dy, dw, db = add_layer_norm_backward_op(dout, z, weight, mean, rstd, seed, ctx.dropout_p,
                                                ctx.x_dtype, ctx.y_dtype)
    return dx, dy, dw, db, None, None, None


add_layer_norm_op.register_autograd(_backward_rule, setup_context=_setup_context)


def add_layer_norm(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, eps: float,
                   dropout_p: float = 0.0) -> torch.Tensor:
    """``LayerNorm(x + dropout(y))`` over the last dim; x, y: (..., H) of the same shape."""
    if x.shape != y.shape or x.shape[-1] != weight.shape[0] or bias.shape != weight.shape:
        raise ValueError(f"add_layer_norm: x {tuple(x.shape)}, y {tuple(y.shape)}, weight {tuple(weight.shape)} "
                         f"and bias {tuple(bias.shape)} do not fit (x and y equal, last dim = weight size)")
    if not x.is_cuda and not interpreting():
        raise ValueError("triton add_layer_norm needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tests)")
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"add_layer_norm: dropout_p must lie in [0, 1), got {dropout_p}")
    H = x.shape[-1]
    seed = torch.randint(0, 2**62, (1,), device=x.device, dtype=torch.int64) if dropout_p > 0.0 else None
    out, _, _, _ = add_layer_norm_op(x.reshape(-1, H).contiguous(), y.reshape(-1, H).contiguous(),
                                     weight.contiguous(), bias.contiguous(), seed, float(eps), float(dropout_p))
    return out.view(x.shape)


def dropout_keep_mask(seed: torch.Tensor, N: int, H: int, dropout_p: float) -> torch.Tensor:
    """(N, H) bool keep mask the kernels draw for this seed: recovered by running the forward on x=0, y=1."""
    ones = torch.ones(N, H, device=seed.device)
    w, b = torch.ones(H, device=seed.device), torch.zeros(H, device=seed.device)
    _, z, _, _ = add_layer_norm_op(torch.zeros_like(ones), ones, w, b, seed, 1e-5, dropout_p)
    return z != 0
