"""The held-out reconstruction check: interpolation reference by hand, and a report on a tiny model."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from audiorep.pretrain.evaluate import interpolate_hidden, reconstruction_report
from audiorep.pretrain.masking import MaskingConfig
from audiorep.pretrain.model import MaskedAcousticModel


def test_interpolation_fills_hidden_frames_between_visible_neighbours():
    feats = torch.tensor([[0.0, -1, -1, 30, -1, 99]])[..., None]  # (1, 6, 1); -1 = hidden, last frame padding
    hidden = torch.tensor([[False, True, True, False, True, False]])
    valid = torch.tensor([[True, True, True, True, True, False]])
    out = interpolate_hidden(feats, hidden, valid)
    # frames 1, 2 lie between visible 0 (value 0) and 3 (value 30): 10, 20; frame 4 has no visible frame
    # after it inside the utterance (5 is padding), so it copies frame 3
    assert out[0, :, 0].tolist() == [0.0, 10.0, 20.0, 30.0, 30.0, 99.0]
    assert interpolate_hidden(feats, torch.ones(1, 6, dtype=torch.bool), valid)[0, :5].abs().sum() == 0


def test_report_scores_model_zero_and_interpolation_on_the_same_hidden_frames(tmp_path, tiny_model):
    paths, ids = [], []
    for i in range(3):
        n = int(16000 * (0.6 + 0.2 * i))
        t = np.arange(n) / 16000
        sf.write(tmp_path / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * 200 * (1 + t) * t)).astype(np.float32), 16000)
        paths.append(str(tmp_path / f"u{i}.wav"))
        ids.append(f"u{i}")
    torch.manual_seed(0)
    enc = tiny_model()  # default FeatureConfig
    model = MaskedAcousticModel(enc, MaskingConfig(zero_prob=0.0, random_prob=0.0)).train()
    rep = reconstruction_report(model, paths, ids, model.masking, batch_size=2)
    again = reconstruction_report(model, paths, ids, model.masking, batch_size=3)
    assert model.training  # restored
    assert rep["utterances"] == 3 and rep["hidden_elements"] > 0 and rep["hidden_elements"] % 80 == 0
    assert set(rep) >= {"model", "zero", "interpolation"}
    for k in ("model", "zero", "interpolation"):  # keyed by utterance: the batch does not change the frames
        assert abs(rep[k] - again[k]) < 1e-5
    # a smooth chirp: interpolating neighbours beats predicting the mean
    assert rep["interpolation"] < rep["zero"]
