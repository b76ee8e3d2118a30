"""Featurizer modes: frozen upstream in weighted-sum / last / layer, trainable in finetune, mean at zero init."""

from __future__ import annotations

import pytest
import torch

from audiorep.probe import Featurizer, LogMelUpstream, build_head, mean_pool, plot_layer_weights
from audiorep.errors import ConfigError


def wav_batch(B: int = 2, S: int = 4000):
    wavs = torch.randn(B, S)
    lens = torch.tensor([S, S - 1000])[:B]
    wavs[1:, S - 1000:] = 0.0
    return wavs, lens


def _one_step(feat: Featurizer) -> dict[str, torch.Tensor]:
    """One AdamW step of a linear head on the featurizer; returns upstream params before the step."""
    head = build_head("frame-linear", feat.hidden_size, 5)
    params = [p for p in list(feat.parameters()) + list(head.parameters()) if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-2)
    before = {k: v.detach().clone() for k, v in feat.upstream.state_dict().items()}
    feat.train()
    wavs, lens = wav_batch()
    x, lengths = feat(wavs, lens)
    loss = head(x, lengths).square().mean()
    loss.backward()
    opt.step()
    return before


@pytest.mark.parametrize("mode,layer", [("weighted-sum", None), ("last", None), ("layer", 1)])
def test_frozen_modes_leave_upstream_untouched(mode, layer, tiny_model):
    up = tiny_model()
    feat = Featurizer(up, mode=mode, layer=layer)
    before = _one_step(feat)
    assert not up.training  # eval mode even after feat.train(): no dropout in a frozen upstream
    for name, p in up.named_parameters():
        assert not p.requires_grad, name
        assert p.grad is None, name
        assert torch.equal(p.detach(), before[name]), name
    if mode == "weighted-sum":
        assert feat.weights.grad is not None and feat.weights.grad.abs().sum() > 0


def test_weighted_sum_output_has_no_graph_into_upstream(tiny_model):
    up = tiny_model()
    feat = Featurizer(up, mode="weighted-sum")
    states, _ = feat.upstream_states(*wav_batch())
    assert all(not s.requires_grad for s in states)


@pytest.mark.parametrize("layer", [None, -1])
def test_finetune_changes_upstream(layer, tiny_model):
    up = tiny_model()
    feat = Featurizer(up, mode="finetune", layer=layer)
    before = _one_step(feat)
    assert up.training
    changed = [n for n, p in up.named_parameters() if not torch.equal(p.detach(), before[n])]
    assert len(changed) > len(list(up.parameters())) // 2
    assert all(p.requires_grad for p in up.parameters())


def test_zero_init_weighted_sum_is_mean_of_hidden_states(tiny_model):
    up = tiny_model().eval()
    feat = Featurizer(up, mode="weighted-sum")
    wavs, lens = wav_batch()
    x, lengths = feat(wavs, lens)
    with torch.no_grad():
        hs = up(wavs, lens).hidden_states
    expected = torch.stack(hs).mean(0)  # (B, T, H)
    assert x.shape == expected.shape == (2, 4000 // 160 + 1, 32)
    torch.testing.assert_close(x, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(feat.layer_weights(), torch.full((3,), 1 / 3))
    assert torch.equal(lengths, torch.tensor([4000 // 160 + 1, 3000 // 160 + 1]))


def test_layer_and_last_pick_one_state_and_layer_norm_keeps_padding_zero(tiny_model):
    up = tiny_model().eval()
    wavs, lens = wav_batch()
    with torch.no_grad():
        hs = up(wavs, lens).hidden_states
    x_last, _ = Featurizer(up, mode="last")(wavs, lens)
    x_l0, _ = Featurizer(up, mode="layer", layer=0)(wavs, lens)
    torch.testing.assert_close(x_last, hs[-1])
    torch.testing.assert_close(x_l0, hs[0])
    assert Featurizer(up, mode="layer", layer=-2).needed_states == [1]
    x_ln, n = Featurizer(up, mode="weighted-sum", layer_norm=True)(wavs, lens)
    assert x_ln[1, int(n[1]):].abs().max() == 0  # padded frames stay zero
    assert x_ln[0].mean(-1).abs().max() < 1e-4  # each layer normalised over H, and so is their mean


def test_combine_on_cached_states_matches_forward(tiny_model):
    up = tiny_model().eval()
    feat = Featurizer(up, mode="weighted-sum")
    with torch.no_grad():
        feat.weights.copy_(torch.tensor([0.3, -1.0, 2.0]))
    wavs, lens = wav_batch()
    x, lengths = feat(wavs, lens)
    states, _ = feat.upstream_states(wavs, lens)
    torch.testing.assert_close(feat.combine(torch.stack(states).half(), lengths), x, rtol=2e-3, atol=2e-3)


def test_logmel_baseline_is_the_front_end():
    up = LogMelUpstream()
    wavs, lens = wav_batch()
    out = up(wavs, lens)
    assert len(out.hidden_states) == 1 and up.num_layers == 0 and up.hidden_size == 80
    x, lengths = Featurizer(up, mode="weighted-sum")(wavs, lens)
    torch.testing.assert_close(x, out.hidden_states[0])
    assert list(up.parameters()) == []


def test_bad_featurizer_arguments(tiny_model):
    up = tiny_model()
    with pytest.raises(ConfigError, match="mode must be one of"):
        Featurizer(up, mode="sum")
    with pytest.raises(ConfigError, match="needs layer"):
        Featurizer(up, mode="layer")
    with pytest.raises(ConfigError, match="out of range"):
        Featurizer(up, mode="layer", layer=3)
    with pytest.raises(ConfigError, match="only used with"):
        Featurizer(up, mode="weighted-sum", layer=1)


def test_mean_pool_ignores_padding():
    x = torch.tensor([[[1.0], [3.0], [100.0]], [[2.0], [4.0], [6.0]]])  # (2, 3, 1)
    torch.testing.assert_close(mean_pool(x, torch.tensor([2, 3])), torch.tensor([[2.0], [4.0]]))


def test_layer_weight_plot(tmp_path):
    pytest.importorskip("matplotlib")
    p = plot_layer_weights({"phone": [0.2, 0.5, 0.3], "speaker": [0.6, 0.3, 0.1]}, tmp_path / "w.png")
    assert p is not None and p.stat().st_size > 1000


def test_mean_linear_is_blind_on_cmvn_features_mean_mlp_is_not():
    """Per-utterance CMVN zeroes the time mean, so pool-then-linear sees nothing; the frame ReLU fixes it."""
    up = LogMelUpstream()
    wavs, lens = wav_batch()
    x, n = Featurizer(up, mode="last")(wavs, lens)
    assert mean_pool(x, n).abs().max() < 1e-4
    head = build_head("mean-mlp", 80, 3)
    assert mean_pool(head.frame(x), n).abs().max() > 1e-2


def test_stacked_logmel_concatenates_neighbours_with_zeros_outside_the_utterance():
    from audiorep.models.logmel import parse_logmel_name, stack_context
    from audiorep.weights.loading import load_upstream

    feats = torch.arange(1.0, 6.0).reshape(1, 5, 1).repeat(2, 1, 2)  # (B=2, T=5, D=2): frame t holds t+1
    lens = torch.tensor([5, 3])
    out = stack_context(feats, lens, 1)  # (2, 5, 6)
    assert out.shape == (2, 5, 6)
    assert out[0, 0].tolist() == [0, 0, 1, 1, 2, 2] and out[0, 4].tolist() == [4, 4, 5, 5, 0, 0]
    assert out[1, 2].tolist() == [2, 2, 3, 3, 0, 0]  # frame 3 of the short utterance is padding, not context
    assert out[1, 3:].abs().sum() == 0
    assert parse_logmel_name("logmel-ctx4") == 4 and parse_logmel_name("logmel") == 0
    assert parse_logmel_name("logmel-ctx") is None and parse_logmel_name("aalbert-base") is None
    up = load_upstream("logmel-ctx2")
    wav = torch.randn(1, 8000)
    o = up(wav)
    assert up.hidden_size == 400 and o.last_hidden_state.shape[-1] == 400
    assert torch.equal(o.last_hidden_state[..., 160:240], LogMelUpstream()(wav).last_hidden_state)
