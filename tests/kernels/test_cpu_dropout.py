"""The CPU attention-dropout path: right keep rate, seeded, and the math of SDPA with the same mask."""

import pytest
import torch
import torch.nn.functional as F

from audiorep.kernels import attention
from audiorep.kernels.cpu_attention import headwise_attention
from audiorep.kernels.cpu_dropout import attention_dropout, dropout_scale_mask
from audiorep.kernels.capabilities import HAVE_ONEDNN_LINEAR


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_mask_keep_rate_scale_and_seed(p):
    torch.manual_seed(0)
    m = dropout_scale_mask((7, 301, 301), p)  # odd element count: the last int32 word is half used
    kept = m > 0
    assert torch.allclose(m[kept], torch.full_like(m[kept], 1 / (1 - p)))
    n = m.numel()
    assert abs(kept.float().mean().item() - (1 - p)) < 5 * (p * (1 - p) / n) ** 0.5
    torch.manual_seed(0)
    assert torch.equal(m, dropout_scale_mask((7, 301, 301), p))
    assert not torch.equal(m, dropout_scale_mask((7, 301, 301), p))  # the generator moved on


def test_without_dropout_equals_sdpa():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 9, 16) for _ in range(3))
    torch.testing.assert_close(attention_dropout(q, k, v, 0.0), F.scaled_dot_product_attention(q, k, v))


def test_output_and_gradients_equal_the_math_with_a_shared_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 4, 11, 16, requires_grad=True) for _ in range(3))
    torch.manual_seed(5)
    out = attention(q, k, v, None, dropout_p=0.2)  # CPU, no mask, dropout: the cpu_dropout path
    grads = torch.autograd.grad(out.square().sum(), (q, k, v))
    torch.manual_seed(5)
    mask = dropout_scale_mask((1, 4, 11, 11), 0.2)  # the same draws
    want = (torch.softmax(q @ k.transpose(-2, -1) / 4.0, -1) * mask) @ v
    torch.testing.assert_close(out, want)
    for g, w in zip(grads, torch.autograd.grad(want.square().sum(), (q, k, v))):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("batch", [1, 2])
def test_a_score_bias_equals_sdpa_with_that_bias(batch):
    """The bias rides in the QK^T GEMM: output and every gradient, the bias's included, equal SDPA's."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(batch, 4, 13, 16, requires_grad=True) for _ in range(3))
    bias = torch.randn(4, 13, 13, requires_grad=True)  # broadcast over the batch
    out = attention_dropout(q, k, v, 0.0, bias)
    want = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    torch.testing.assert_close(out, want)
    got_g = torch.autograd.grad(out.square().sum(), (q, k, v, bias))
    for g, w in zip(got_g, torch.autograd.grad(want.square().sum(), (q, k, v, bias))):
        torch.testing.assert_close(g, w)


def test_training_with_a_bias_takes_the_math_path_and_its_mask():
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 2, 9, 8, requires_grad=True) for _ in range(3))
    bias = -torch.rand(2, 9, 9)
    torch.manual_seed(3)
    out = attention(q, k, v, None, dropout_p=0.3, bias=bias)
    torch.manual_seed(3)
    mask = dropout_scale_mask((1, 2, 9, 9), 0.3)
    want = (torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5 + bias, -1) * mask) @ v
    torch.testing.assert_close(out, want)
    with torch.no_grad():  # inference keeps SDPA (no (T, T) scores stored); same values without dropout
        torch.testing.assert_close(attention(q, k, v, None, bias=bias),
                                   torch.softmax(q @ k.transpose(-2, -1) / 8 ** 0.5 + bias, -1) @ v)


@pytest.mark.skipif(not HAVE_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")
@pytest.mark.parametrize("p, with_bias", [(0.1, False), (0.0, True), (0.2, True)])
def test_headwise_onednn_attention_equals_the_math_path(p, with_bias):
    """Same seed, same mask; output and the gradients of q, k, v and the bias agree to float32 rounding."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(1, 3, 37, 16, requires_grad=True) for _ in range(3))
    bias = (0.3 * torch.randn(3, 37, 37)).requires_grad_() if with_bias else None
    g = torch.randn(1, 3, 37, 16)
    results = []
    for f in (headwise_attention, attention_dropout):
        torch.manual_seed(5)
        out = f(q, k, v, p, bias)
        out.backward(g)
        leaves = [t for t in (q, k, v, bias) if t is not None]
        results.append([out.detach()] + [t.grad.clone() for t in leaves])
        for t in leaves:
            t.grad = None
    for got, want in zip(*results):
        assert got.shape == want.shape
        assert (got - want).abs().max().item() < 1e-5 * max(1.0, want.abs().max().item())


@pytest.mark.skipif(not HAVE_ONEDNN_LINEAR, reason="this torch build has no oneDNN linear op")
def test_dispatch_sends_only_long_utterances_headwise(monkeypatch):
    from audiorep.kernels import cpu_attention, cpu_dropout

    calls = []
    monkeypatch.setattr(cpu_attention, "MIN_SCORES", 3 * 20 * 20)
    monkeypatch.setattr(cpu_attention, "headwise_attention", lambda *a: calls.append("headwise") or a[0])
    monkeypatch.setattr(cpu_dropout, "attention_dropout", lambda *a: calls.append("math") or a[0])
    for T, onednn in ((20, True), (19, True), (20, False)):
        q = torch.randn(1, 3, T, 8, requires_grad=True)
        attention(q, q, q, None, dropout_p=0.1, onednn=onednn)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention(q, q, q, None, dropout_p=0.1, onednn=True)
    assert calls == ["headwise", "math", "math", "math"]
