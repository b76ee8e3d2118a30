import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.audio import batch_waveforms


def test_read_audio_downmixes_and_resamples(tmp_path):
    t = np.arange(8000) / 8000.0
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.zeros_like(t)], axis=1).astype("float32")  # (S, 2)
    path = tmp_path / "a.wav"
    sf.write(path, stereo, 8000)
    wav, sr = audiorep.read_audio(path)
    assert sr == 8000 and wav.shape == (8000,)
    assert torch.allclose(wav, torch.from_numpy(stereo.mean(1)), atol=1e-4)  # 16-bit PCM quantisation
    wav16, sr16 = audiorep.read_audio(path, 16000)
    assert sr16 == 16000 and wav16.shape == (16000,)


@pytest.mark.parametrize("content,msg", [(b"", "cannot read"), (b"RIFF\x00\x00garbage" * 10, "cannot read")])
def test_read_audio_corrupt(tmp_path, content, msg):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(audiorep.AudioError, match=msg) as err:
        audiorep.read_audio(path)
    assert "bad.wav" in str(err.value)


def test_read_audio_missing_empty_nan(tmp_path):
    with pytest.raises(audiorep.AudioError, match="no such audio file"):
        audiorep.read_audio(tmp_path / "nope.flac")
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros((0,), dtype="float32"), 16000)
    with pytest.raises(audiorep.AudioError, match="no samples"):
        audiorep.read_audio(empty)
    nan = tmp_path / "nan.wav"
    sf.write(nan, np.full((100,), np.nan, dtype="float32"), 16000, subtype="FLOAT")
    with pytest.raises(audiorep.AudioError, match="NaN"):
        audiorep.read_audio(nan)


def test_batch_waveforms_shapes_and_errors():
    wavs, lens = batch_waveforms([torch.ones(5), torch.ones(3)])
    assert wavs.shape == (2, 5) and lens.tolist() == [5, 3] and wavs[1, 3:].abs().sum() == 0
    wavs, lens = batch_waveforms(torch.ones(7))
    assert wavs.shape == (1, 7) and lens.tolist() == [7]
    with pytest.raises(audiorep.AudioError, match="3-D"):
        batch_waveforms(torch.ones(2, 1, 100))
    with pytest.raises(audiorep.AudioError, match="empty"):
        batch_waveforms([torch.ones(3), torch.ones(0)])
    with pytest.raises(audiorep.AudioError, match=r"utterance\(s\) \[1\]"):
        batch_waveforms([torch.ones(3), torch.full((4,), float("nan"))])
    # NaN in padding is not the user's audio and is ignored
    padded = torch.tensor([[1.0, 2.0, float("nan")]])
    batch_waveforms(padded, [2])
    with pytest.raises(audiorep.AudioError, match="wav_lens"):
        batch_waveforms(torch.ones(2, 10), [10, 11])
    with pytest.raises(audiorep.AudioError, match="float"):
        batch_waveforms(torch.ones(2, 10, dtype=torch.int16))


def test_read_audio_window_reads_a_slice_and_refuses_one_past_the_end(tmp_path):
    from audiorep.audio import read_audio_window

    x = (0.2 * np.sin(np.arange(5000) / 7.0)).astype(np.float32)
    p = tmp_path / "a.flac"
    sf.write(p, x, 16000)
    whole, sr = audiorep.read_audio(p)
    part, sr2, total = read_audio_window(p, 1200, 800)
    assert (sr, sr2, total) == (16000, 16000, 5000) and torch.equal(part, whole[1200:2000])
    with pytest.raises(audiorep.AudioError, match=r"a.flac: frames 4800..5600 asked for, the file holds 5000"):
        read_audio_window(p, 4800, 800)
    w = tmp_path / "cut.wav"
    sf.write(w, x, 16000, subtype="PCM_16")
    w.write_bytes(w.read_bytes()[:6000])  # a copy cut short: the header still declares 5000 frames
    with pytest.raises(audiorep.AudioError, match="cut.wav: truncated"):
        read_audio_window(w, 0, 100)


# (extension, soundfile format, subtype): every container soundfile writes that a user may hand in
CONTAINERS = [("wav", "WAV", "PCM_16"), ("wav", "WAVEX", "PCM_16"), ("wav", "RF64", "PCM_16"),
              ("w64", "W64", "PCM_16"), ("aiff", "AIFF", "PCM_16"), ("aifc", "AIFF", "FLOAT"),
              ("au", "AU", "PCM_16"), ("au", "AU", "ULAW"), ("flac", "FLAC", "PCM_16"),
              ("ogg", "OGG", "VORBIS"), ("mp3", "MP3", "MPEG_LAYER_III")]


@pytest.mark.parametrize("ext,fmt,subtype", CONTAINERS, ids=[f"{c[1]}-{c[2]}" for c in CONTAINERS])
@pytest.mark.parametrize("keep", [0.5, 0.97])
def test_truncated_file_of_every_container_is_an_error_naming_it(tmp_path, ext, fmt, subtype, keep):
    x = (0.3 * np.sin(np.arange(32000) / 5.0)).astype(np.float32)
    p = tmp_path / f"whole-{fmt}.{ext}"
    sf.write(p, x, 16000, format=fmt, subtype=subtype)
    wav, _ = audiorep.read_audio(p)  # the complete file reads, at its declared length
    assert abs(wav.numel() - 32000) <= (1152 if fmt == "MP3" else 0)
    cut = tmp_path / f"cut-{fmt}.{ext}"
    data = p.read_bytes()
    cut.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(audiorep.AudioError, match=f"cut-{fmt}.{ext}: (truncated|cannot read)"):
        audiorep.read_audio(cut)


def test_2d_input_that_looks_transposed_is_refused():
    with pytest.raises(audiorep.AudioError, match=r"wavs: shape \(16000, 2\) looks like \(samples, channels\); "
                                                  r"expected \(batch, samples\)"):
        batch_waveforms(torch.randn(16000, 2))
    wavs, lens = batch_waveforms(torch.randn(3, 16000))  # a real batch still passes
    assert wavs.shape == (3, 16000) and lens.tolist() == [16000] * 3


@pytest.mark.parametrize("lens", [[1.9, 800.7], torch.tensor([1.5, 800.0]), np.array([2.0, 800.5])])
def test_non_integer_wav_lens_are_an_error(lens):
    with pytest.raises(audiorep.AudioError, match=r"wav_lens: lengths must be whole sample counts, got"):
        batch_waveforms(torch.randn(2, 1000), lens)
    wavs, out = batch_waveforms(torch.randn(2, 1000), [2.0, 800.0])  # integral floats are fine
    assert out.tolist() == [2, 800]
