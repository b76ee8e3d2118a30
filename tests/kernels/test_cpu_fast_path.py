"""The CPU inference fast path (fused oneDNN linears, valid-frame packing) must give the eager path's numbers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from audiorep.features import FeatureConfig
from audiorep.kernels import capabilities, choose, fused, use_kernels
from audiorep.models.mockingjay import MockingjayModel, mockingjay_config


def tiny_model(**overrides) -> MockingjayModel:
    torch.manual_seed(0)
    cfg = mockingjay_config(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128, **overrides)
    model = MockingjayModel(cfg, FeatureConfig()).eval()
    with torch.no_grad():  # move biases and LayerNorm off 0/1 so a dropped bias would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@pytest.mark.parametrize("mode", ["plain", "gelu", "residual"])
def test_fused_linear_matches_eager(mode):
    torch.manual_seed(0)
    layer = nn.Linear(48, 96 if mode != "residual" else 48)
    nn.init.normal_(layer.bias)
    x = torch.randn(3, 17, 48)  # (B, T, in)
    res = torch.randn(3, 17, 48) if mode == "residual" else None
    with torch.inference_mode():
        want = fused.linear(x, layer, gelu=mode == "gelu", residual=res, fused=False)
        got = fused.linear(x, layer, gelu=mode == "gelu", residual=res, fused=fused.fusion_enabled(choose(), x, False))
        eager = layer(x)
        eager = F.gelu(eager) if mode == "gelu" else eager if res is None else eager + res
    assert torch.equal(want, eager)
    assert (got - want).abs().max().item() < 1e-5


@pytest.mark.skipif(not fused.CPU_BF16, reason="oneDNN has no bf16 on this CPU")
@pytest.mark.parametrize("mode", ["plain", "gelu", "residual"])
def test_fused_bf16_linear_matches_eager_bf16(mode):
    """bf16 inference fuses too; its reference is the eager bf16 op (both round to bf16 once per output)."""
    torch.manual_seed(0)
    layer = nn.Linear(48, 96 if mode != "residual" else 48).to(torch.bfloat16)
    x = torch.randn(3, 17, 48).to(torch.bfloat16)  # (B, T, in)
    res = torch.randn(3, 17, 48).to(torch.bfloat16) if mode == "residual" else None
    with torch.inference_mode():
        assert fused.fusion_enabled(choose(), x, False)
        want = fused.linear(x, layer, gelu=mode == "gelu", residual=res, fused=False)
        got = fused.linear(x, layer, gelu=mode == "gelu", residual=res, fused=True)
    assert got.dtype == torch.bfloat16
    assert (got.float() - want.float()).abs().max().item() <= 0.02 * want.float().abs().max().item()


def test_model_reduced_precision_keeps_the_front_end_fp32():
    model = tiny_model().reduced_precision()
    assert all(p.dtype == torch.bfloat16 for p in model.layers.parameters())
    assert model.features.window.dtype == torch.float32
    wav = torch.randn(1, 8000) * 0.1
    with torch.inference_mode():
        out = model(wav)
        ref = tiny_model()(wav)
    assert out.last_hidden_state.dtype == torch.bfloat16
    assert (out.last_hidden_state.float() - ref.last_hidden_state).abs().max() < 0.15


def test_fast_path_only_without_autograd():
    x = torch.randn(2, 3)
    assert not fused.cpu_inference(x, training=False)  # grad mode is on here
    with torch.no_grad():
        assert fused.cpu_inference(x, training=False)
        assert not fused.cpu_inference(x, training=True)
        assert not fused.fusion_enabled(choose(), x.double(), training=False)
        with use_kernels(cpu_fusion=False):
            off = choose()
        assert not off.cpu_fast_path and not fused.fusion_enabled(off, x, training=False)


def test_switches_are_read_once_and_recorded_at_construction(monkeypatch):
    from audiorep.kernels import KernelConfig, kernel_config

    cfg = KernelConfig.from_env({"AUDIOREP_ATTENTION": "reference", "AUDIOREP_CPU_FUSION": "0",
                                 "AUDIOREP_FUSED_OPS": "torch"})
    assert (cfg.attention, cfg.cpu_fusion, cfg.layer_norm) == ("reference", False, "torch")
    with use_kernels(attention="reference"):
        model = tiny_model()
    monkeypatch.setenv("AUDIOREP_ATTENTION", "triton")  # read once already: no effect on anything
    assert {layer.kernels.attention for layer in model.layers} == {"reference"}
    assert tiny_model().layers[0].kernels.attention == kernel_config().attention  # the block restored it
    assert tiny_model(attention_backend="sdpa").layers[0].kernels.attention == "sdpa"


@pytest.mark.parametrize("share", [False, True])
def test_model_fast_path_matches_eager_and_is_batch_invariant(share):
    model = tiny_model(share_layers=share)
    with use_kernels(cpu_fusion=False):  # the switch is recorded at construction: same weights, plain path
        plain = tiny_model(share_layers=share)
    g = torch.Generator().manual_seed(1)
    wavs = [0.1 * torch.randn(n, generator=g) for n in (4000, 2500, 800, 3999)]  # mixed: packed path
    with torch.inference_mode():
        fast = model(wavs)
        alone = [model([w]) for w in wavs]
        slow = plain(wavs)
    T = fast.last_hidden_state.shape[1]
    keep = (torch.arange(T) < fast.lengths[:, None])[..., None]  # (B, T, 1)
    assert torch.equal(fast.lengths, slow.lengths)
    for f, s in zip(fast.hidden_states, slow.hidden_states):
        assert (f - s).abs().max().item() < 1e-5
        assert not (f * ~keep).any(), "padding must stay zero on the packed path"
    for i, a in enumerate(alone):
        n = int(fast.lengths[i])
        for f, s in zip(fast.hidden_states, a.hidden_states):
            assert (f[i, :n] - s[0, :n]).abs().max().item() < 1e-5


def test_training_still_differentiable():
    model = tiny_model().train()
    out = model([0.1 * torch.randn(3000), 0.1 * torch.randn(1700)])
    out.last_hidden_state.sum().backward()
    assert model.layers[0].ffn_in.weight.grad is not None
    model.zero_grad(set_to_none=True)  # the packed layer trains too (no fused linears under autograd)
    model.layers[0].forward_packed(torch.randn(5, 64), [2, 3]).sum().backward()
    assert model.layers[0].attn.qkv.weight.grad is not None


@pytest.mark.skipif(not capabilities.HAVE_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("d_in, d_out", [(48, 96), (96, 48)])  # dW from either transposed operand
def test_onednn_training_linear_matches_f_linear(bias, d_in, d_out):
    """Forward and all three gradients of ``fused.dense`` equal F.linear's to float32 rounding."""
    torch.manual_seed(0)
    layer = nn.Linear(d_in, d_out, bias=bias)
    choice = choose()
    assert choice.onednn_training
    x = torch.randn(3, 17, d_in, requires_grad=True)  # (B, T, in)
    gy = torch.randn(3, d_out, 17).transpose(1, 2)  # (B, T, out), strided like a gradient from a transpose
    outs, grads = [], []
    for use_onednn in (True, False):
        with use_kernels(onednn_training=use_onednn):
            c = choose()
        y = fused.dense(x, layer, c)
        y.backward(gy)
        outs.append(y.detach())
        grads.append([t.grad.clone() for t in (x, layer.weight, layer.bias) if t is not None])
        for t in (x, layer.weight, layer.bias):
            if t is not None:
                t.grad = None
    assert (outs[0] - outs[1]).abs().max().item() < 1e-5
    for a, b in zip(*grads):
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < 1e-5 * max(1.0, b.abs().max().item())


def test_onednn_training_linear_leaves_autocast_and_other_dtypes_to_torch():
    layer = nn.Linear(8, 4)
    x = torch.randn(5, 8)
    with use_kernels(onednn_training=False):
        assert not fused.onednn_training(choose(), x)
    choice = choose()
    assert not fused.onednn_training(choice, x.double())
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not fused.onednn_training(choice, x)
        assert fused.dense(x, layer, choice).dtype == torch.bfloat16  # autocast still picks the dtype
    assert fused.dense(x, layer, choice).dtype == torch.float32


@pytest.mark.skipif(not capabilities.HAVE_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")
def test_packed_training_step_same_gradients_with_either_gemm_library():
    """A whole packed layer (dropout off): oneDNN's GEMMs give F.linear's loss and gradients."""
    with use_kernels(onednn_training=False):
        plain = tiny_model(dropout=0.0, attn_dropout=0.0).train()
    fast = tiny_model(dropout=0.0, attn_dropout=0.0).train()
    x = torch.randn(9, 64)  # (N, H): utterances of 4 and 5 frames
    losses = []
    for model in (fast, plain):
        h = model.layers[0].forward_packed(x, [4, 5])
        loss = model.layers[1].forward_packed(h, [4, 5]).pow(2).mean()
        loss.backward()
        losses.append(loss.item())
    assert abs(losses[0] - losses[1]) < 1e-6
    for (name, a), b in zip(fast.layers.named_parameters(), plain.layers.parameters()):
        assert (a.grad - b.grad).abs().max().item() < 1e-5, name
