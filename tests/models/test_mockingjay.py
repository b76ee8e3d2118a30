import pytest
import torch

import audiorep
from audiorep.models import MockingjayConfig, MockingjayModel

PUBLISHED = {"mockingjay-base": 21_327_360, "mockingjay-large": 85_118_208,
             "aalbert-base": 7_151_616, "tera-base": 21_327_360}


@pytest.mark.parametrize("name", audiorep.list_models())
def test_every_preset_builds_with_published_parameter_count(name):
    m = audiorep.load(name, pretrained=False)
    assert sum(p.numel() for p in m.parameters()) == PUBLISHED[name]
    assert m.sample_rate == 16000 and m.hidden_size == 768
    assert not m.training


def tiny(**kw) -> MockingjayModel:
    cfg = MockingjayConfig(hidden_size=64, num_heads=4, intermediate_size=128, num_layers=2, **kw)
    return MockingjayModel(cfg).eval()


def test_output_structure_and_zeroed_padding():
    m = tiny()
    out = m([torch.randn(1600), torch.randn(800)])
    assert len(out.hidden_states) == 3
    assert out.last_hidden_state is out.hidden_states[-1]
    assert out.lengths.tolist() == [11, 6]
    for h in out.hidden_states:
        assert h.shape == (2, 11, 64) and h[1, 6:].abs().max() == 0


def test_an_utterance_is_the_same_alone_or_in_any_batch():
    """s3prl's batched outputs depend on padding (up to ~1.7 off); ours must not (1e-5)."""
    m = audiorep.load("mockingjay-base", pretrained=False)
    wavs = [torch.randn(16000) * 0.1, torch.randn(24000) * 0.1, torch.randn(8000) * 0.1]
    with torch.inference_mode():
        batched = m(wavs)
        for perm in ([2, 0, 1], [1, 2]):
            sub = m([wavs[i] for i in perm])
            for j, i in enumerate(perm):
                T = batched.lengths[i]
                for a, b in zip(batched.hidden_states, sub.hidden_states):
                    assert (a[i, :T] - b[j, :T]).abs().max() < 1e-5
        for i, w in enumerate(wavs):
            alone = m([w])
            T = batched.lengths[i]
            for a, b in zip(batched.hidden_states, alone.hidden_states):
                assert (a[i, :T] - b[0]).abs().max() < 1e-5


def test_shared_layers_apply_one_layer_n_times():
    m = tiny(share_layers=True)
    assert len(m.layers) == 1 and m.num_layers == 2
    feats, lens = m.extract_features([torch.randn(3200)])
    out = m.encode(feats, lens)
    x = m.embed(feats)
    x = m.layers[0](m.layers[0](x))
    assert torch.allclose(out.last_hidden_state, x, atol=1e-6)


def test_factorized_embedding():
    m = tiny(embedding_size=16, share_layers=True)
    assert m.input_proj.out_features == 16 and m.embed_proj.in_features == 16
    assert m([torch.randn(800)]).last_hidden_state.shape == (1, 6, 64)


def test_long_input_is_not_chunked():
    """s3prl splits inputs over 1500 frames into independent chunks; here early frames see late ones."""
    m = tiny()
    wav = torch.randn(16000 * 16)  # 1601 frames
    with torch.inference_mode():
        a = m([wav]).last_hidden_state
        wav2 = wav.clone()
        wav2[-16000:] = torch.randn(16000)
        b = m([wav2]).last_hidden_state
    assert a.shape[1] == 1601
    assert (a[0, :100] - b[0, :100]).abs().max() > 1e-4  # the first second depends on the last one


def test_bad_inputs_give_clear_errors():
    m = tiny()
    with pytest.raises(audiorep.AudioError, match="3-D"):
        m(torch.randn(2, 1, 1600))
    with pytest.raises(audiorep.AudioError, match="8000 does not match"):
        m(torch.randn(1, 1600), sample_rate=8000)
    with pytest.raises(audiorep.AudioError, match="NaN"):
        m([torch.full((1600,), float("nan"))])
    with pytest.raises(audiorep.AudioError, match="empty"):
        m([torch.zeros(0)])
    out = m([torch.randn(1)])  # shorter than one window: one valid frame, no crash
    assert out.lengths.tolist() == [1] and torch.isfinite(out.last_hidden_state).all()


def test_config_validation():
    with pytest.raises(audiorep.ConfigError, match="multiple of num_heads"):
        MockingjayConfig(hidden_size=100, num_heads=12)
    with pytest.raises(audiorep.ConfigError, match="input_dim"):
        MockingjayModel(MockingjayConfig(input_dim=40))


def test_distance_bias_is_learned_saved_and_refused_by_the_s3prl_export(tmp_path):
    """The opt-in distance bias: slopes start spread from 1/2 to 1/256, get gradients, load back from a saved
    model, change the output, and make an s3prl export fail with one line."""
    from audiorep.weights.s3prl import export_s3prl_checkpoint
    from audiorep.errors import ConfigError
    from audiorep.weights.loading import load
    from audiorep.models.mockingjay import MockingjayModel, mockingjay_config

    cfg = mockingjay_config(hidden_size=32, num_layers=2, num_heads=4, intermediate_size=64, distance_bias=True,
                            dropout=0.0, attn_dropout=0.0)
    torch.manual_seed(0)
    model = MockingjayModel(cfg)
    slopes = model.layers[0].attn.distance_log_slope.exp()
    assert torch.allclose(slopes, torch.tensor([2.0 ** -(1 + 7 * h / 3) for h in range(4)]))
    wav = torch.randn(2, 8000)
    out = model(wav, torch.tensor([8000, 5000])).last_hidden_state
    out.square().sum().backward()
    assert model.layers[0].attn.distance_log_slope.grad.abs().sum() > 0
    folder = model.save_pretrained(tmp_path / "m")
    again = load(folder).eval()
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(again(wav).last_hidden_state, model(wav).last_hidden_state)
        plain = MockingjayModel(mockingjay_config(**{**cfg.to_dict(), "distance_bias": False}))
        plain.load_state_dict({k: v for k, v in model.state_dict().items() if "distance" not in k})
        assert not torch.allclose(plain(wav).last_hidden_state, model(wav).last_hidden_state)
    with pytest.raises(ConfigError, match="distance_bias cannot be exported"):
        export_s3prl_checkpoint(model, tmp_path / "s3.ckpt")


def test_distance_bias_floor_changes_nothing_but_keeps_scores_out_of_denormals():
    """Scores below -BIAS_FLOOR only ever weighed < e^-50 of the nearest key: flooring them leaves the attention
    output as it was, and exp() of the floored scores stays a normal float32 (denormals are slow on CPU)."""
    from audiorep.layers import transformer as tr

    torch.manual_seed(0)
    attn = tr.SelfAttention(32, 4, 0.0, distance_bias=True).eval()
    with torch.no_grad():
        attn.distance_log_slope.copy_(torch.tensor([2.0, 0.8, 0.05, 0.001]).log())  # steep to flat heads
    bias = attn.score_bias(200, torch.device("cpu")).detach()  # (nh, T, T)
    assert float(bias.min()) == -tr.BIAS_FLOOR and float(bias.max()) == 0.0
    assert float(bias.exp().min()) >= torch.finfo(torch.float32).tiny
    x = torch.randn(2, 200, 32)
    with torch.no_grad():
        floored = attn(x, None, None)
        floor, tr.BIAS_FLOOR = tr.BIAS_FLOOR, float("inf")
        try:
            exact = attn(x, None, None)
        finally:
            tr.BIAS_FLOOR = floor
    torch.testing.assert_close(floored, exact, rtol=0, atol=1e-6)


def test_model_call_refuses_transposed_audio_and_fractional_lengths():
    import audiorep

    m = audiorep.load("aalbert-base", pretrained=False)
    with pytest.raises(audiorep.AudioError, match=r"looks like \(samples, channels\)"):
        m(torch.randn(16000, 2))
    with pytest.raises(audiorep.AudioError, match="whole sample counts"):
        m(torch.randn(2, 1000), [1.9, 800.7])
