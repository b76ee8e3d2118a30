"""The CPU attention-dropout path: right keep rate, seeded, and the math of SDPA with the same mask."""

import pytest
import torch
import torch.nn.functional as F

from audiorep.kernels import attention
from audiorep.kernels.cpu_dropout import attention_dropout, dropout_scale_mask


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
