"""Alteration: proportions, spans, modes, lengths, determinism, TERA band and noise; and the masked loss."""

from __future__ import annotations

import pytest
import torch

from audiorep.errors import ConfigError
from audiorep.pretrain.loss import masked_reconstruction_loss
from audiorep.pretrain.masking import (MaskingConfig, alter, apply_plan, make_plan, tera_masking,
                                       utterance_keys)


def _batch(lens, D=80, seed=0):
    g = torch.Generator().manual_seed(seed)
    L = torch.tensor(lens)
    T = int(L.max())
    valid = torch.arange(T)[None, :] < L[:, None]
    feats = torch.randn(len(lens), T, D, generator=g) * valid[..., None]  # zero padding, like the front end
    return feats, L, valid


def _keys(n, step=0, seed=0):
    return utterance_keys([f"utt{i}" for i in range(n)], seed, step)


def test_time_mask_proportion_spans_and_padding():
    lens = [1000, 700, 400, 120]
    feats, L, valid = _batch(lens)
    plan = make_plan(L, feats.shape[1], 80, MaskingConfig(), _keys(4))
    assert not (plan.time_mask & ~valid).any()
    for b, n in enumerate(lens):
        frac = plan.time_mask[b].sum().item() / n
        assert 0.08 <= frac <= 0.16, (n, frac)  # 15% before overlaps; overlaps only lower it
        # every run of masked frames is a union of whole 7-frame spans: each run is at least 7 long
        row = plan.time_mask[b].int()
        edges = torch.diff(torch.cat([torch.zeros(1, dtype=torch.int32), row, torch.zeros(1, dtype=torch.int32)]))
        starts, ends = (edges == 1).nonzero().flatten(), (edges == -1).nonzero().flatten()
        assert ((ends - starts) >= 7).all()
    x, _, mask = alter(feats, L, MaskingConfig(), _keys(4))
    assert torch.equal(x[~valid], feats[~valid])  # padding never altered
    assert not mask[~valid].any()


def test_every_long_enough_utterance_gets_a_span_and_short_ones_do_not_crash():
    lens = [7, 8, 23, 24, 6, 1, 2]
    feats, L, _ = _batch(lens)
    plan = make_plan(L, feats.shape[1], 80, MaskingConfig(), _keys(len(lens)))
    counts = plan.time_mask.sum(1).tolist()
    assert counts[:4] == [7, 7, 7, 7]  # at least one span (s3prl gives 0 spans below 24 frames and asserts)
    assert counts[4:] == [0, 0, 0]  # shorter than a span: nothing altered, no error
    x, t, m = alter(feats, L, MaskingConfig(), _keys(len(lens)))
    loss = masked_reconstruction_loss(torch.zeros_like(t), t, m)
    assert torch.isfinite(loss)


def test_modes_zero_random_unchanged():
    feats, L, valid = _batch([300, 300, 250])
    keys = _keys(3)
    zero = apply_plan(feats, make_plan(L, 300, 80, MaskingConfig(zero_prob=1.0, random_prob=0.0), keys))
    plan = make_plan(L, 300, 80, MaskingConfig(zero_prob=1.0, random_prob=0.0), keys)
    tm = plan.time_mask
    assert (zero[tm] == 0).all() and torch.equal(zero[~tm], feats[~tm])

    plan = make_plan(L, 300, 80, MaskingConfig(zero_prob=0.0, random_prob=1.0), keys)
    rnd = apply_plan(feats, plan)
    for b in range(3):
        for t in plan.time_mask[b].nonzero().flatten().tolist():
            src = plan.source[b, t].item()
            assert src < L[b] and torch.equal(rnd[b, t], feats[b, src])  # a real frame of the same utterance
    assert not torch.equal(rnd, feats)

    plan = make_plan(L, 300, 80, MaskingConfig(zero_prob=0.0, random_prob=0.0), keys)
    assert torch.equal(apply_plan(feats, plan), feats) and plan.loss_mask().sum() > 0  # unchanged, still predicted


def test_mode_frequencies_over_many_utterances():
    n = 4000
    L = torch.full((n,), 50)
    plan = make_plan(L, 50, 8, MaskingConfig(), _keys(n))
    freq = torch.bincount(plan.mode, minlength=3).float() / n
    assert abs(freq[0] - 0.8) < 0.03 and abs(freq[1] - 0.1) < 0.03 and abs(freq[2] - 0.1) < 0.03


def test_plan_depends_only_on_the_utterance_not_the_batch():
    a_keys = utterance_keys(["a", "b", "c"], seed=3, step=5)
    alone = make_plan(torch.tensor([90]), 90, 80, tera_masking(), a_keys[1:2])
    in_batch = make_plan(torch.tensor([400, 90, 30]), 400, 80, tera_masking(), a_keys)
    assert torch.equal(alone.time_mask[0], in_batch.time_mask[1, :90])
    assert torch.equal(alone.freq_mask[0], in_batch.freq_mask[1])
    assert alone.mode[0] == in_batch.mode[1] and alone.noise[0] == in_batch.noise[1]
    other_step = make_plan(torch.tensor([90]), 90, 80, tera_masking(), utterance_keys(["b"], 3, 6))
    assert not torch.equal(alone.time_mask, other_step.time_mask)


def test_tera_frequency_band_and_noise():
    n = 600
    feats, L, valid = _batch([60] * (n - 1) + [40], D=80)
    cfg = tera_masking()
    plan = make_plan(L, 60, 80, cfg, _keys(n))
    widths = plan.freq_mask.sum(1)
    assert widths.max() <= 16 and widths.max() >= 12  # up to 20% of 80 bins, drawn uniformly from 0..16
    # the band is one contiguous run of bins
    for b in range(20):
        idx = plan.freq_mask[b].nonzero().flatten()
        if idx.numel():
            assert idx[-1] - idx[0] + 1 == idx.numel()
    assert 0.10 < plan.noise.float().mean() < 0.20
    x = apply_plan(feats, plan)
    assert torch.equal(x[~valid], feats[~valid])
    m = plan.loss_mask()
    assert torch.equal(m.sum(), plan.altered_count().float())
    b = int(plan.freq_mask.sum(1).argmax())
    band = plan.freq_mask[b]
    assert (m[b][valid[b]][:, band] == 1).all()  # band predicted on valid frames only
    clean = (~plan.time_mask) & (~plan.noise[:, None]) & valid  # frames neither spanned nor noised
    assert torch.equal(x[b][clean[b]][:, ~band], feats[b][clean[b]][:, ~band])
    noisy = int(plan.noise.nonzero()[0])
    d = (x[noisy] - feats[noisy])[valid[noisy]][:, ~plan.freq_mask[noisy]]
    d = d[~plan.time_mask[noisy][valid[noisy]]]
    assert 0.15 < d.std() < 0.25  # sigma 0.2


def test_linear_targets_and_config_errors():
    plan = make_plan(torch.tensor([50]), 50, 80, MaskingConfig(), _keys(1))
    assert plan.loss_mask(201).shape == (1, 50, 201)
    plan = make_plan(torch.tensor([50]), 50, 80, tera_masking(), _keys(1))
    if plan.freq_mask.any():
        with pytest.raises(ConfigError):
            plan.loss_mask(201)
    for bad in ({"time_proportion": 1.5}, {"span": 0}, {"zero_prob": 0.9, "random_prob": 0.2},
                {"time_proportion": 0.0}):
        with pytest.raises(ConfigError):
            MaskingConfig(**bad)


def test_masked_loss_matches_masked_select_and_handles_empty_masks():
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(3, 20, 8, generator=g, requires_grad=True)
    tgt = torch.randn(3, 20, 8, generator=g)
    mask = (torch.rand(3, 20, 1, generator=g) < 0.3).expand(-1, -1, 8).float()
    ref = torch.nn.functional.l1_loss(pred.masked_select(mask.bool()), tgt.masked_select(mask.bool()))
    assert torch.allclose(masked_reconstruction_loss(pred, tgt, mask), ref)
    ref2 = torch.nn.functional.mse_loss(pred.masked_select(mask.bool()), tgt.masked_select(mask.bool()))
    assert torch.allclose(masked_reconstruction_loss(pred, tgt, mask, "mse"), ref2)
    empty = masked_reconstruction_loss(pred, tgt, torch.zeros_like(mask))
    empty.backward()
    assert empty.item() == 0.0 and torch.isfinite(pred.grad).all()
    with pytest.raises(ConfigError):
        masked_reconstruction_loss(pred, tgt, mask, "huber")


def test_linear_spectrum_targets_mockingjay_large_style():
    from audiorep.features import FeatureConfig
    from audiorep.models.mockingjay import MockingjayConfig, MockingjayModel
    from audiorep.pretrain.model import MaskedAcousticModel

    cfg = MockingjayConfig(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, output_dim=201)
    model = MaskedAcousticModel(MockingjayModel(cfg), MaskingConfig(), target_features=FeatureConfig(kind="linear"))
    wavs = torch.randn(2, 4000)
    lens = torch.tensor([4000, 2500])
    loss = model(wavs, lens, _keys(2), reduction="mean")
    loss.backward()
    assert torch.isfinite(loss) and model.head.out.weight.shape == (201, 32)
    assert model.head.out.weight.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="frequency masking"):
        MaskedAcousticModel(MockingjayModel(cfg), tera_masking(), target_features=FeatureConfig(kind="linear"))
    with pytest.raises(ConfigError, match="output_dim"):
        MaskedAcousticModel(MockingjayModel(MockingjayConfig(hidden_size=32, num_heads=2, num_layers=1)),
                            MaskingConfig(), target_features=FeatureConfig(kind="linear"))
