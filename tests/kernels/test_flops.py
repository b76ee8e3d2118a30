"""The FLOP counter behind every benchmark's roofline columns: a hand count, and torch's own FLOP counter."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from audiorep.kernels import use_kernels
from audiorep.kernels.flops import forward_flops, gemm_shapes, train_step_flops
from audiorep.models.mockingjay import MockingjayConfig, MockingjayModel, SpecPredictionHead
from audiorep.pretrain.loss import masked_reconstruction_loss

TINY = MockingjayConfig(input_dim=4, hidden_size=8, num_layers=2, num_heads=2, intermediate_size=16, dropout=0.0,
                        attn_dropout=0.0)


def test_hand_count_for_a_tiny_config():
    # rows 8 = 3 + 5 frames. Input 2*8*4*8 = 512. Per layer 2*8*(3*64 + 64 + 2*8*16) = 8192, two layers 16384.
    # Attention per layer 4*(3^2 + 5^2)*8 = 1088, two layers 2176. Head 2*8*(8*8 + 8*4) = 1536.
    f = forward_flops(TINY, [3, 5])
    assert (f.gemm, f.attention, f.total) == (16896, 2176, 19072)
    assert forward_flops(TINY, [3, 5], head=True).gemm == 16896 + 1536
    # step: 3 x forward, less the input projection's dX (features carry no gradient): 3*18432 - 512
    t = train_step_flops(TINY, [3, 5])
    assert (t.gemm, t.attention) == (54784, 6528)
    # padded to 5: 10 rows; input 640 + layers 2*10240; attention 2 * 4*(25 + 25)*8
    p = forward_flops(TINY, [3, 5], padded_to=5)
    assert (p.gemm, p.attention) == (21120, 3200)
    with pytest.raises(ValueError, match="padded_to 4"):
        forward_flops(TINY, [3, 5], padded_to=4)


def test_factorized_embedding_and_shapes():
    cfg = MockingjayConfig(input_dim=4, hidden_size=8, num_layers=1, num_heads=2, intermediate_size=16,
                           embedding_size=6, share_layers=True)
    assert forward_flops(cfg, [2]).gemm == 2 * 2 * 4 * 6 + 2 * 2 * 6 * 8 + 2 * 2 * 512
    assert gemm_shapes(cfg, 10) == [(10, 4, 6), (10, 6, 8), (10, 8, 24), (10, 8, 8), (10, 8, 16), (10, 16, 8)]


def test_agrees_with_torch_flop_counter():
    """Equal-length batch (no padding, so the padded and the valid-frame counts coincide): torch counts the
    same GEMM and attention FLOPs, forward and backward."""
    torch.manual_seed(0)
    # 80: the front end fixes the mel bins; reference attention: its matmuls are what torch can count (its CPU
    # flash SDPA op has no FLOP formula); F.linear, not oneDNN's linear op, which the counter does not know
    cfg = dataclasses.replace(TINY, input_dim=80, attention_backend="reference")
    with use_kernels(onednn_training=False):
        enc, head = MockingjayModel(cfg).train(), SpecPredictionHead(cfg).train()
    feats = torch.randn(2, 6, 80)
    with FlopCounterMode(display=False) as fwd:
        with torch.no_grad():
            enc.encode(feats)
    assert fwd.get_total_flops() == forward_flops(cfg, [6, 6]).total
    with FlopCounterMode(display=False) as step:
        pred = head(enc.encode(feats).last_hidden_state)
        masked_reconstruction_loss(pred, feats, torch.ones_like(feats)).backward()
    assert step.get_total_flops() == train_step_flops(cfg, [6, 6]).total
