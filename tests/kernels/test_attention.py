"""Attention kernels: the Triton kernel (under TRITON_INTERPRET=1 on CPU) against the fp32 reference.

Accuracy rule (FlashAttention's): |kernel - ref_fp32| must be at most 2x |torch_same_precision - ref_fp32|
plus a small absolute floor, for the output and for dQ, dK, dV.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from audiorep.kernels import attention, attention_reference, dispatch

# With CUDA the same tests run the compiled kernels on the GPU; without it, Triton's interpreter runs them on
# CPU tensors (tests/conftest.py sets TRITON_INTERPRET=1 before collection).
DEV = "cuda" if torch.cuda.is_available() else "cpu"

ta = pytest.importorskip("audiorep.kernels.triton_attention")
needs_interpreter = pytest.mark.skipif(
    DEV == "cpu" and os.environ.get("TRITON_INTERPRET") != "1", reason="Triton kernels on CPU need TRITON_INTERPRET=1"
)

# Absolute floors: below these an error is noise of the format itself, not a kernel fault.
FLOOR = {torch.float32: 1e-5, torch.float16: 1e-4, torch.bfloat16: 1e-3}


def attention_same_precision(q, k, v, lengths):
    """Plain PyTorch attention computed entirely in the inputs' dtype (the baseline error of that dtype)."""
    T, D = q.shape[2], q.shape[3]
    scores = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(D))  # (B, H, T, T)
    keep = torch.arange(T, device=q.device)[None, :] < lengths[:, None]  # (B, T)
    scores = scores.masked_fill(~keep[:, None, None, :], float("-inf"))
    out = scores.softmax(-1) @ v  # (B, H, T, D)
    return out * keep[:, None, :, None]


def run_three(q, k, v, lengths, grad):
    """(out, dq, dk, dv) for the kernel, the fp32 reference and the same-precision PyTorch computation."""
    results = {}
    for name in ("kernel", "ref", "torch"):
        dtype = torch.float32 if name == "ref" else q.dtype
        xs = [x.detach().to(dtype).requires_grad_() for x in (q, k, v)]
        if name == "kernel":
            out = ta.attention(*xs, lengths)
        elif name == "ref":
            out = attention_reference(*xs, lengths)
        else:
            out = attention_same_precision(*xs, lengths)
        out.backward(grad.to(dtype))
        results[name] = [out.detach().float()] + [x.grad.float() for x in xs]
    return results


def random_qkv(B, H, T, D, dtype, strided=False):
    if strided:  # q, k, v as slices of one fused projection, the layout the encoders pass
        qkv = torch.randn(B, T, 3, H, D).to(DEV, dtype)
        return [qkv[:, :, i].transpose(1, 2) for i in range(3)]
    return [torch.randn(B, H, T, D).to(DEV, dtype) for _ in range(3)]


@needs_interpreter
@pytest.mark.parametrize(
    "dtype,D,lengths,strided",
    [
        (torch.float16, 64, [33, 1, 20], False),
        (torch.bfloat16, 16, [48, 1, 23], True),
        (torch.float32, 16, [33, 48, 1], True),
        (torch.float16, 16, [16, 32], False),  # lengths on tile boundaries
    ],
)
def test_forward_backward_within_twice_torch_error(dtype, D, lengths, strided):
    torch.manual_seed(0)
    lengths = torch.tensor(lengths, device=DEV)
    B, H, T = len(lengths), 2, int(lengths.max())
    q, k, v = random_qkv(B, H, T, D, dtype, strided)
    grad = torch.randn(B, H, T, D, device=DEV)
    res = run_three(q, k, v, lengths, grad)
    for i, what in enumerate(("out", "dq", "dk", "dv")):
        err_kernel = (res["kernel"][i] - res["ref"][i]).abs().max().item()
        err_torch = (res["torch"][i] - res["ref"][i]).abs().max().item()
        bound = 2 * err_torch + FLOOR[dtype]
        print(f"{dtype} D={D} {what}: kernel {err_kernel:.2e} torch {err_torch:.2e} bound {bound:.2e}")
        assert err_kernel <= bound, f"{what}: kernel error {err_kernel:.3e} > bound {bound:.3e}"
    # rows past a length: zero output, zero gradient into q; keys past a length get zero dk/dv
    for b, n in enumerate(lengths.tolist()):
        if n < T:
            for t in res["kernel"]:
                assert t[b, :, n:].abs().max().item() == 0.0


@needs_interpreter
def test_no_lengths_equals_full_lengths():
    torch.manual_seed(1)
    q, k, v = random_qkv(2, 2, 20, 16, torch.float32)
    full = torch.tensor([20, 20], device=DEV)
    torch.testing.assert_close(ta.attention(q, k, v), ta.attention(q, k, v, full), rtol=0, atol=0)
    torch.testing.assert_close(ta.attention(q, k, v), attention_reference(q, k, v), rtol=1e-5, atol=1e-5)


@needs_interpreter
def test_fused_dropout_matches_reference_with_the_same_mask():
    torch.manual_seed(2)
    B, H, T, D, p = 2, 2, 24, 16, 0.3
    lengths = torch.tensor([24, 9], device=DEV)
    q, k, v = [x.requires_grad_() for x in random_qkv(B, H, T, D, torch.float32)]
    seed = torch.tensor([123456789], dtype=torch.int64, device=DEV)
    out, _ = ta.varlen_attention_op(q, k, v, lengths.to(torch.int32), seed, p, 1 / math.sqrt(D))
    grad = torch.randn_like(out)
    dq, dk, dv = torch.autograd.grad(out, (q, k, v), grad)

    keep = ta.dropout_keep_mask(seed, B, H, T, p)  # (B, H, T, T)
    frac = keep.float().mean().item()
    assert abs(frac - (1 - p)) < 0.03, f"keep fraction {frac:.3f}, expected {1 - p}"
    qr, kr, vr = [x.detach().clone().requires_grad_() for x in (q, k, v)]
    scores = (qr @ kr.transpose(-1, -2)) / math.sqrt(D)
    valid = torch.arange(T, device=DEV)[None, :] < lengths[:, None]
    probs = scores.masked_fill(~valid[:, None, None, :], float("-inf")).softmax(-1)
    ref = ((probs * keep / (1 - p)) @ vr) * valid[:, None, :, None]
    ref_grads = torch.autograd.grad(ref, (qr, kr, vr), grad)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip((dq, dk, dv), ref_grads):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@needs_interpreter
def test_dropout_is_repeatable_under_manual_seed_and_varies_otherwise():
    q, k, v = random_qkv(1, 2, 16, 16, torch.float32)
    torch.manual_seed(5)
    a = ta.attention(q, k, v, dropout_p=0.5)
    torch.manual_seed(5)
    b = ta.attention(q, k, v, dropout_p=0.5)
    c = ta.attention(q, k, v, dropout_p=0.5)
    assert torch.equal(a, b) and not torch.equal(a, c)


@needs_interpreter
def test_custom_op_opcheck():
    """Schema, fake (meta) implementation, autograd registration and AOT dispatch all agree with the kernel."""
    torch.manual_seed(3)
    q, k, v = [x.requires_grad_() for x in random_qkv(2, 2, 16, 16, torch.float32)]
    lengths = torch.tensor([16, 5], dtype=torch.int32, device=DEV)
    torch.library.opcheck(ta.varlen_attention_op, (q, k, v, lengths, None, 0.0, 0.25),
                          test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


@needs_interpreter
def test_torch_compile_traces_the_op_without_graph_breaks():
    torch.manual_seed(4)
    lengths = torch.tensor([16, 7], device=DEV)
    q, k, v = random_qkv(2, 2, 16, 16, torch.float32)

    def f(q, k, v, lengths):
        return attention(q, k, v, lengths, backend="triton").sum()

    compiled = torch.compile(f, backend="aot_eager", fullgraph=True)
    xs = [x.clone().requires_grad_() for x in (q, k, v)]
    ys = [x.clone().requires_grad_() for x in (q, k, v)]
    compiled(*xs, lengths).backward()
    f(*ys, lengths).backward()
    for a, b in zip(xs, ys):
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-5, atol=1e-6)


def test_bad_inputs_are_named():
    q = torch.randn(1, 2, 8, 24)
    with pytest.raises(ValueError, match="head dim 24"):
        ta.check_inputs(q, q, q)
    with pytest.raises(ValueError, match="one \\(B, H, T, D\\) shape"):
        ta.check_inputs(q, q[:, :, :4], q)
    with pytest.raises(ValueError, match="backend must be one of"):
        attention(q, q, q, backend="flash")


def test_auto_on_cpu_is_sdpa_and_matches_reference():
    q, k, v = [x.cpu() for x in random_qkv(2, 2, 12, 16, torch.float32)]
    lengths = torch.tensor([12, 4])
    assert dispatch.resolve_backend(q, "auto", lengths) == "sdpa"
    out = attention(q, k, v, lengths)
    ref = attention_reference(q, k, v, lengths)
    valid = (torch.arange(12)[None, :] < lengths[:, None])[:, None, :, None]
    torch.testing.assert_close(out * valid, ref, rtol=1e-5, atol=1e-5)


TABLE = {"entries": [
    {"device": "GPU-A", "capability": "sm_90", "dtype": "bfloat16", "head_dim": 64, "t_class": "T<2048",
     "mode": "fwd_bwd", "best": "triton"},
    {"device": "GPU-B", "capability": "sm_90", "dtype": "bfloat16", "head_dim": 64, "t_class": "T<2048",
     "mode": "fwd_bwd", "best": "sdpa"},
    {"op": "add_layer_norm", "device": "GPU-A", "capability": "sm_90", "dtype": "bfloat16", "hidden": 768,
     "best": "triton"},
]}


def test_tuned_table_lookup():
    choice = lambda *a: dispatch.tuned_choice(*a, table=TABLE)  # noqa: E731
    assert choice("GPU-A", "sm_90", torch.bfloat16, 64, 1500, "fwd_bwd") == "triton"
    assert choice("GPU-B", "sm_90", torch.bfloat16, 64, 1000, "fwd_bwd") == "sdpa"
    assert choice("GPU-C", "sm_90", torch.bfloat16, 64, 1000, "fwd_bwd") == "triton"  # same architecture
    assert choice("GPU-A", "sm_90", torch.bfloat16, 64, 3000, "fwd_bwd") is None  # class not measured
    assert choice("GPU-A", "sm_90", torch.bfloat16, 64, 1000, "fwd") is None  # pass not measured
    assert choice("GPU-A", "sm_80", torch.float16, 64, 1000, "fwd_bwd") is None


def test_auto_choice_traces_under_torch_compile_with_dynamic_lengths(monkeypatch):
    """The CUDA 'auto' decision must not graph-break: the table is a snapshot, the device name a constant."""
    monkeypatch.setattr(dispatch, "_TABLE", TABLE)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index=None: "GPU-A")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: (9, 0))

    def f(q):
        return q * 2.0 if dispatch.auto_choice(q, 0) == "triton" else q * 3.0

    compiled = torch.compile(f, backend="eager", fullgraph=True, dynamic=True)
    for T, factor in ((1000, 2.0), (1500, 2.0), (3000, 3.0)):
        q = torch.ones(1, 2, T, 64, dtype=torch.bfloat16, requires_grad=True)
        assert compiled(q).detach().float().mean().item() == factor


def test_shipped_tuned_table_is_valid():
    table = dispatch.load_tuned()
    assert isinstance(table["entries"], list)
    for e in table["entries"]:
        if e.get("op", "attention") == "attention":
            assert e["best"] in ("triton", "sdpa", "reference") and e["t_class"] in [n for _, n in dispatch.T_CLASSES]
        else:
            assert e["op"] == "add_layer_norm" and e["best"] in ("torch", "triton")


def test_import_audiorep_does_not_import_triton():
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    code = ("import sys, audiorep, audiorep.kernels, audiorep.models; "
            "print(sorted(m for m in sys.modules if m == 'triton' or m.startswith('triton.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == "[]", out.stdout


@needs_interpreter
@pytest.mark.parametrize("share_layers", [False, True], ids=["mockingjay", "aalbert"])
def test_encoder_hidden_states_agree_across_backends(share_layers, tiny_model):
    torch.manual_seed(6)
    feats = torch.randn(3, 40, 80, device=DEV)  # (B, T, 80)
    lengths = torch.tensor([40, 1, 23], device=DEV)
    outs = {}
    for backend in ("reference", "sdpa", "triton"):
        torch.manual_seed(7)  # same weights for every backend
        model = tiny_model(share_layers=share_layers, attention_backend=backend).to(DEV).eval()
        with torch.no_grad():
            outs[backend] = model.encode(feats, lengths).hidden_states
    for backend in ("sdpa", "triton"):
        for layer, (a, b) in enumerate(zip(outs[backend], outs["reference"])):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{backend} layer {layer}")


@needs_interpreter
def test_encoder_gradients_agree_triton_vs_sdpa(tiny_model):
    feats = torch.randn(2, 32, 80, device=DEV)
    lengths = torch.tensor([32, 11], device=DEV)
    grads = {}
    for backend in ("sdpa", "triton"):
        torch.manual_seed(8)
        model = tiny_model(num_layers=1, dropout=0.0, attn_dropout=0.0, attention_backend=backend).to(DEV).train()
        model.encode(feats, lengths).last_hidden_state.square().sum().backward()
        grads[backend] = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for name, g in grads["sdpa"].items():
        torch.testing.assert_close(grads["triton"][name], g, rtol=1e-4, atol=1e-5, msg=name)
