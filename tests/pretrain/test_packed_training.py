"""Packed training steps (valid frames only, attention per utterance) must train the padded path's model."""

from __future__ import annotations

import pytest
import torch

from audiorep.features import FeatureConfig
from audiorep.kernels import KernelConfig, use_kernels
from audiorep.models.mockingjay import MockingjayModel, mockingjay_config
from audiorep.pretrain.masking import MaskingConfig, apply_plan, make_plan, utterance_keys
from audiorep.pretrain.model import MaskedAcousticModel

LENS = [37, 1, 20, 9]  # ragged, with a 1-frame utterance


def _pair(dropout: float = 0.0, distance_bias: bool = False,
          fused_reference: bool = True) -> tuple[MaskedAcousticModel, MaskedAcousticModel]:
    """(packed, padded) models with the same weights, in training mode; ``fused_reference=False`` also builds
    the padded one without the fused CPU inference linears (a plain eager reference for eval mode)."""
    cfg = mockingjay_config(hidden_size=64, num_layers=2, num_heads=4, intermediate_size=128,
                            dropout=dropout, attn_dropout=dropout, distance_bias=distance_bias)
    models = []
    for packed in (True, False):
        fusion = {} if packed or fused_reference else {"cpu_fusion": False}
        with use_kernels(packed_training=packed, **fusion):
            torch.manual_seed(0)
            models.append(MaskedAcousticModel(MockingjayModel(cfg, FeatureConfig()), MaskingConfig()).train())
    with torch.no_grad():  # move biases and LayerNorm off 0/1 so a dropped term would show
        for p in models[0].parameters():
            p.add_(torch.randn_like(p) * 0.05)
    models[1].load_state_dict(models[0].state_dict())
    assert models[0].encoder.packs(torch.zeros(1)) and not models[1].encoder.packs(torch.zeros(1))
    return models[0], models[1]


def _batch(lens=LENS, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = max(lens)
    flens = torch.tensor(lens)
    valid = (torch.arange(T) < flens[:, None]).unsqueeze(-1)
    feats = torch.randn(len(lens), T, 80, generator=g) * valid  # (B, T, 80), zero padding
    plan = make_plan(flens, T, 80, MaskingConfig(), utterance_keys([f"u{i}" for i in range(len(lens))], 0, 0))
    return apply_plan(feats, plan), feats, flens, plan


def _loss_and_grads(model, batch):
    model.zero_grad(set_to_none=True)
    total, count = model.reconstruction_error(*batch)
    (total / count).backward()
    return total.detach(), count, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("distance_bias,lens", [(False, LENS), (True, LENS), (False, [24, 24, 24])])
def test_packed_loss_and_gradients_equal_the_padded_path(distance_bias, lens):
    """Ragged batches, and full-length crops (no padding: packing still trims the head to altered frames)."""
    packed, padded = _pair(distance_bias=distance_bias)
    batch = _batch(lens)
    if lens == LENS:
        assert bool(batch[3].loss_mask()[1].sum() == 0)  # the 1-frame utterance predicts nothing but attends
    l1, c1, g1 = _loss_and_grads(packed, batch)
    l2, c2, g2 = _loss_and_grads(padded, batch)
    assert c1 == c2 and c1 > 0
    torch.testing.assert_close(l1, l2, rtol=1e-5, atol=1e-5)
    assert g1.keys() == g2.keys() and len(g1) == len(list(packed.parameters()))
    for name in g1:
        torch.testing.assert_close(g1[name], g2[name], rtol=1e-4, atol=1e-6, msg=name)


def test_packed_encode_matches_padded_hidden_states_and_gradients():
    packed, padded = _pair()
    inputs, _, flens, _ = _batch()
    outs = []
    for model in (packed, padded):
        model.zero_grad(set_to_none=True)
        out = model.encoder.encode(inputs, flens)
        sum(h.square().sum() for h in out.hidden_states).backward()
        outs.append((out, model.encoder.layers[0].attn.qkv.weight.grad.clone()))
    (a, ga), (b, gb) = outs
    for x, y in zip(a.hidden_states, b.hidden_states):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-5)
        assert x[1, 1:].abs().max() == 0  # padding stays zero
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-5)


def test_packed_dropout_is_seeded_and_unbiased():
    packed, padded = _pair(dropout=0.1)
    batch = _batch()
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append(_loss_and_grads(packed, batch))
    assert torch.equal(runs[0][0], runs[1][0])  # same seed, same dropout masks, same step
    assert all(torch.equal(runs[0][2][n], runs[1][2][n]) for n in runs[0][2])
    # Different masks than the padded path draws, same distribution: the mean loss over many seeds agrees.
    with torch.no_grad():
        losses = {}
        for name, model in (("packed", packed), ("padded", padded)):
            vals = []
            for seed in range(60):
                torch.manual_seed(seed)
                total, count = model.reconstruction_error(*batch)
                vals.append(float(total / count))
            losses[name] = torch.tensor(vals)
    diff = losses["packed"].mean() - losses["padded"].mean()
    se = (losses["packed"].var() / 60 + losses["padded"].var() / 60).sqrt()
    assert abs(float(diff)) < 4 * float(se) + 1e-6


def test_forward_reductions_agree_between_paths():
    packed, padded = _pair()
    wavs = torch.randn(3, 4000) * 0.1
    lens = torch.tensor([4000, 1200, 400])
    keys = utterance_keys(["a", "b", "c"], 0, 0)
    for reduction in ("sum", "mean"):
        torch.testing.assert_close(packed(wavs, lens, keys, reduction=reduction),
                                   padded(wavs, lens, keys, reduction=reduction), rtol=1e-5, atol=1e-5)


def test_switch_is_read_from_the_environment():
    assert KernelConfig.from_env({}).packed_training
    assert not KernelConfig.from_env({"AUDIOREP_PACKED_TRAINING": "0"}).packed_training


@pytest.mark.parametrize("lens", [[5], [3, 3]])
def test_unpadded_batches_take_the_batched_path(lens):
    packed, padded = _pair()
    batch = _batch(lens)
    torch.testing.assert_close(packed.reconstruction_error(*batch)[0], padded.reconstruction_error(*batch)[0])


def test_packed_error_sum_in_cpu_inference_equals_the_padded_path():
    """Under no_grad in eval mode the packed path (fused linears, head on altered frames) gives the same sum."""
    packed, padded = _pair(fused_reference=False)
    batch = _batch()
    with torch.no_grad():
        t1, c1 = packed.eval().reconstruction_error(*batch)
        assert packed.encoder.packs(batch[0]) and not padded.eval().encoder.packs(batch[0])
        t2, c2 = padded.reconstruction_error(*batch)
    assert c1 == c2
    torch.testing.assert_close(t1, t2, rtol=1e-5, atol=1e-4)
