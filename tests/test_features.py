import pytest
import torch

from audiorep.features import FeatureConfig, FeatureExtractor, reflect_indices


def test_reflect_indices_match_torch_reflect_pad():
    x = torch.randn(1, 50)
    idx = reflect_indices(torch.tensor([50]), 20, 90)
    ref = torch.nn.functional.pad(x[None], (20, 20), mode="reflect")[0]
    assert torch.equal(torch.gather(x, 1, idx), ref)


def test_frame_count_and_cmvn():
    fe = FeatureExtractor(FeatureConfig())
    wav = torch.randn(1, 16000)
    feats, lens = fe(wav, torch.tensor([16000]))
    assert feats.shape == (1, 101, 80) and lens.tolist() == [101]
    assert feats.mean(1).abs().max() < 1e-4
    assert (feats.std(1) - 1).abs().max() < 1e-3


def test_padding_never_changes_features():
    fe = FeatureExtractor(FeatureConfig())
    a, b = torch.randn(16000), torch.randn(7777)
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :7777] = a, b
    feats, lens = fe(batch, torch.tensor([16000, 7777]))
    alone, _ = fe(b[None], torch.tensor([7777]))
    assert lens.tolist() == [101, 7777 // 160 + 1]
    assert (feats[1, : lens[1]] - alone[0]).abs().max() < 1e-4
    assert feats[1, lens[1]:].abs().max() == 0


def test_matches_s3prl_preprocessor_for_a_single_utterance():
    pre = pytest.importorskip("s3prl.upstream.baseline.preprocessor")
    audio = {"target_level": -25, "win_ms": 25, "hop_ms": 10, "n_freq": 201, "n_mels": 80, "n_mfcc": 13,
             "input": {"feat_type": "mel", "channel": 0, "log": True, "delta": 0, "cmvn": True}}
    ref_fe, _, _ = pre.get_preprocessor(audio, process_input_only=True)
    wav = torch.randn(12345) * 0.1
    scaled = wav * (10 ** (-25 / 20)) / (wav.pow(2).mean().sqrt() + 1e-10)
    ref = ref_fe(scaled.view(1, 1, -1), wavs_len=[12345])[0][0]  # (T, 80)
    ours, _ = FeatureExtractor(FeatureConfig())(wav[None], torch.tensor([12345]))
    assert ours.shape[1:] == ref.shape
    assert (ours[0] - ref).abs().max() < 1e-3


@pytest.mark.parametrize("n", [1, 2, 100, 200, 401])
def test_short_waveforms_give_valid_frames(n):
    feats, lens = FeatureExtractor(FeatureConfig())(torch.randn(1, n), torch.tensor([n]))
    assert lens.item() == n // 160 + 1 and feats.shape[1] == lens.item()
    assert torch.isfinite(feats).all()


def test_silence_is_finite():
    feats, _ = FeatureExtractor(FeatureConfig())(torch.zeros(1, 4000), torch.tensor([4000]))
    assert torch.isfinite(feats).all()


def test_config_errors_name_the_field():
    from audiorep import ConfigError

    with pytest.raises(ConfigError, match="kind"):
        FeatureConfig(kind="mfcc")
    with pytest.raises(ConfigError, match="unknown field"):
        FeatureConfig.from_dict({"n_mel": 80})


def test_float64_dft_power_matches_an_fft_and_leaves_features_float32():
    """The float64 DFT path (ONNX export's front end) is an exact spectrum: float64 FFT agreement far below
    float32 rounding, yet the features it feeds the encoder stay float32."""
    from audiorep.features import dft_basis, dft_power

    fe = FeatureExtractor()
    c = fe.config
    torch.manual_seed(0)
    padded = torch.randn(2, 16000 + c.n_fft)  # (B, S + n_fft)
    basis = dft_basis(fe.window, c.n_fft, torch.float64)
    assert basis.dtype == torch.float64
    power = dft_power(padded, basis, c.n_fft, c.hop_length)  # (B, T, F)
    ref = torch.stft(padded.double(), c.n_fft, c.hop_length, c.win_length, fe.window.double(), center=False,
                     return_complex=True).abs().square().transpose(1, 2)  # (B, T, F)
    assert power.dtype == torch.float64
    assert float((power - ref).abs().max() / ref.abs().max()) < 1e-12
    feats, _ = fe(padded[:, :16000], torch.tensor([16000, 9000]), dft_basis=basis)
    eager, _ = fe(padded[:, :16000], torch.tensor([16000, 9000]))
    assert feats.dtype == torch.float32 and float((feats - eager).abs().max()) < 1e-2
