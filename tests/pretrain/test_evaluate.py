"""The held-out reconstruction check: interpolation reference by hand, and a report on a tiny model."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch

from audiorep.pretrain.evaluate import interpolate_hidden, reconstruction_report
from audiorep.pretrain.masking import MaskingConfig
from audiorep.pretrain.model import MaskedAcousticModel


def _chirps(folder, seconds, f0):
    """Smooth rising chirps u0, u1, ... of the given lengths at 16 kHz -> (paths, ids)."""
    paths, ids = [], []
    for i, sec in enumerate(seconds):
        t = np.arange(int(16000 * sec)) / 16000
        sf.write(folder / f"u{i}.wav", (0.3 * np.sin(2 * np.pi * f0 * (1 + t) * t)).astype(np.float32), 16000)
        paths.append(str(folder / f"u{i}.wav"))
        ids.append(f"u{i}")
    return paths, ids


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
    paths, ids = _chirps(tmp_path, [0.6, 0.8, 1.0], 200.0)
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


def test_distance_to_visible_counts_frames_to_the_nearest_visible_neighbour():
    from audiorep.pretrain.evaluate import distance_to_visible

    hidden = torch.tensor([[False, True, True, True, True, False, True, True]])
    valid = torch.tensor([[True] * 7 + [False]])  # frame 7 is padding: frame 6 has a visible frame on one side
    assert distance_to_visible(hidden, valid)[0, :7].tolist() == [0, 1, 2, 2, 1, 0, 1]


def test_report_breaks_the_loss_down_by_distance_and_reports_where_layers_look(tmp_path, tiny_model):
    paths, ids = _chirps(tmp_path, [0.8, 1.1], 150.0)
    torch.manual_seed(0)
    enc = tiny_model()
    model = MaskedAcousticModel(enc, MaskingConfig(span=7, time_proportion=0.3))
    rep = reconstruction_report(model, paths, ids, model.masking)
    buckets = rep["by_distance"]
    assert set(buckets) <= {"1", "2", "3", "4", "5+"} and {"1", "2", "3"} <= set(buckets)
    assert abs(sum(b["fraction"] for b in buckets.values()) - 1.0) < 1e-9
    for k in ("model", "zero", "interpolation"):  # the buckets partition the hidden elements
        assert abs(sum(b["fraction"] * b[k] for b in buckets.values()) - rep[k]) < 1e-5
    # interpolation is best next to a visible frame and degrades towards the middle of a span
    assert buckets["1"]["interpolation"] < buckets["3"]["interpolation"]
    L = enc.config.num_layers
    for key in ("all_frames", "hidden_frames"):
        d = rep["attention_distance"][key]
        assert len(d) == L and all(0.0 <= x < 110 for x in d)


def test_attention_probabilities_mask_padding_and_match_the_layer_output(tiny_model):
    enc = tiny_model().eval()
    x = torch.randn(2, 9, enc.config.hidden_size)  # (B, T, H)
    lens = torch.tensor([9, 5])
    attn = enc.layers[0].attn
    p = attn.probabilities(x, lens)  # (B, nh, T, T)
    assert torch.allclose(p.sum(-1), torch.ones(p.shape[:-1]), atol=1e-6)
    assert p[1, :, :, 5:].abs().max() == 0  # padded keys get no weight
    # the same weights applied to the values give what the attention kernels give
    with torch.no_grad():
        v = attn.qkv(x).chunk(3, -1)[2].reshape(2, 9, attn.num_heads, -1).transpose(1, 2)  # (B, nh, T, d)
        ctx = (p @ v).transpose(1, 2).reshape(2, 9, -1)  # (B, T, H)
        ref = attn.context(x[:1], None, None)  # (1, T, H): the full-length utterance through the kernels
    assert torch.allclose(ctx[0], ref[0], atol=1e-5)
