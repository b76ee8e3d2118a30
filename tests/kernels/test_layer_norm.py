"""Fused dropout + residual + LayerNorm (Triton; interpreter on CPU) against the fp32 PyTorch reference."""

from __future__ import annotations

import os

import pytest
import torch

from audiorep.kernels import add_layer_norm, add_layer_norm_reference, resolve_ln_backend, use_kernels

DEV = "cuda" if torch.cuda.is_available() else "cpu"  # CPU: TRITON_INTERPRET=1 from tests/conftest.py

tln = pytest.importorskip("audiorep.kernels.triton_layer_norm")
pytestmark = pytest.mark.skipif(DEV == "cpu" and os.environ.get("TRITON_INTERPRET") != "1",
                                reason="Triton kernels on CPU need TRITON_INTERPRET=1")
FLOOR = {torch.float32: 1e-5, torch.float16: 1e-3, torch.bfloat16: 1e-2}


def _case(N, H, x_dtype, y_dtype, w_dtype):
    g = torch.Generator().manual_seed(0)
    x = (torch.randn(N, H, generator=g) * 2 + 0.5).to(DEV, x_dtype)
    y = torch.randn(N, H, generator=g).to(DEV, y_dtype)
    w = (1 + 0.3 * torch.randn(H, generator=g)).to(DEV, w_dtype)
    b = (0.1 * torch.randn(H, generator=g)).to(DEV, w_dtype)
    dout = torch.randn(N, H, generator=g).to(DEV)
    return [x, y, w, b], dout


def _run(fn, tensors, dout, dtype_override=None):
    xs = [t.detach().to(dtype_override or t.dtype).requires_grad_() for t in tensors]
    out = fn(*xs, 1e-12)
    out.backward(dout.to(out.dtype))
    return [out.detach().float()] + [t.grad.float() for t in xs]


@pytest.mark.parametrize("dtypes", [
    (torch.float32, torch.float32, torch.float32),
    (torch.float32, torch.bfloat16, torch.float32),  # autocast: fp32 residual stream, bf16 branch, fp32 LN
    (torch.float16, torch.float16, torch.float16),
    (torch.bfloat16, torch.bfloat16, torch.bfloat16),
], ids=["fp32", "amp-bf16", "fp16", "bf16"])
def test_matches_reference_within_twice_torch_error(dtypes):
    tensors, dout = _case(10, 48, *dtypes)  # H = 48: not a power of two, so the column mask matters
    got = _run(tln.add_layer_norm, tensors, dout)
    ref = _run(add_layer_norm_reference, tensors, dout, torch.float32)
    same = _run(add_layer_norm_reference, tensors, dout)
    for name, a, r, s in zip(("out", "dx", "dy", "dw", "db"), got, ref, same):
        err, base = (a - r).abs().max().item(), (s - r).abs().max().item()
        bound = 2 * base + FLOOR[dtypes[1]] * max(1.0, r.abs().max().item() / 10)
        assert err <= bound, f"{name}: {err:.3e} > {bound:.3e} (torch same-precision error {base:.3e})"


def test_fused_dropout_uses_one_mask_forward_and_backward():
    tensors, dout = _case(12, 40, torch.float32, torch.float32, torch.float32)
    x, y, w, b = [t.requires_grad_() for t in tensors]
    p = 0.25
    seed = torch.tensor([987654321], dtype=torch.int64, device=DEV)
    out, _, _, _ = tln.add_layer_norm_op(x, y, w, b, seed, 1e-12, p)
    grads = torch.autograd.grad(out, (x, y, w, b), dout)
    keep = tln.dropout_keep_mask(seed, 12, 40, p)
    assert abs(keep.float().mean().item() - (1 - p)) < 0.06
    xr, yr, wr, br = [t.detach().clone().requires_grad_() for t in (x, y, w, b)]
    ref = torch.nn.functional.layer_norm(xr + yr * keep / (1 - p), (40,), wr, br, 1e-12)
    ref_grads = torch.autograd.grad(ref, (xr, yr, wr, br), dout)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for a, r in zip(grads, ref_grads):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5)


def test_opcheck_and_dispatch():
    tensors, _ = _case(6, 32, torch.float32, torch.float32, torch.float32)
    x, y, w, b = [t.requires_grad_() for t in tensors]
    torch.library.opcheck(tln.add_layer_norm_op, (x, y, w, b, None, 1e-5, 0.0),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))
    assert resolve_ln_backend(x.cpu()) == "torch"  # CPU auto: the reference
    a = add_layer_norm(x.view(2, 3, 32), y.view(2, 3, 32), w, b, 1e-5, backend="triton")
    r = add_layer_norm(x.view(2, 3, 32), y.view(2, 3, 32), w, b, 1e-5, backend="torch")
    torch.testing.assert_close(a, r, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="backend must be one of"):
        add_layer_norm(x, y, w, b, 1e-5, backend="apex")


@pytest.mark.parametrize("train", [False, True], ids=["eval", "train"])
def test_encoder_post_ln_steps_through_triton_match_the_reference(train, tiny_model):
    """The transformer's residual + LayerNorm steps run on the fused kernel when the switch says so."""
    feats = torch.randn(2, 24, 80, device=DEV)  # (B, T, 80)
    lengths = torch.tensor([24, 9], device=DEV)
    got = {}
    for backend in ("torch", "triton"):
        with use_kernels(layer_norm=backend):
            torch.manual_seed(9)  # same weights for both
            model = tiny_model(dropout=0.0, attn_dropout=0.0, attention_backend="sdpa")
        assert model.layers[0].kernels.layer_norm == backend
        model.to(DEV).train(train)
        with torch.set_grad_enabled(train):
            hidden = model.encode(feats, lengths).hidden_states
        grads = {}
        if train:
            hidden[-1].square().sum().backward()
            grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        got[backend] = ([h.detach() for h in hidden], grads)
    for layer, (a, r) in enumerate(zip(got["triton"][0], got["torch"][0])):
        torch.testing.assert_close(a, r, rtol=1e-4, atol=1e-5, msg=f"layer {layer}")
    for name, g in got["torch"][1].items():
        torch.testing.assert_close(got["triton"][1][name], g, rtol=1e-4, atol=1e-4, msg=name)
