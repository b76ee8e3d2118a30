"""The one frozen-feature cache: keys follow the weights and feature config; files round-trip atomically."""

from __future__ import annotations

import dataclasses

import torch

from audiorep.probe.cache import cache_file, feature_cache_key, load_features, save_features, weights_hash


def test_changing_one_weight_changes_the_key(tiny_model):
    torch.manual_seed(0)
    up = tiny_model()
    key = feature_cache_key(up, mode="last")
    assert feature_cache_key(up, mode="last") == key  # deterministic
    torch.manual_seed(0)
    assert feature_cache_key(tiny_model(), mode="last") == key  # same weights, another object
    with torch.no_grad():
        up.layers[1].ffn_out.bias[3] += 1e-3  # one number in the last layer
    assert feature_cache_key(up, mode="last") != key


def test_feature_config_and_ident_change_the_key(tiny_model):
    torch.manual_seed(0)
    up = tiny_model()
    key = feature_cache_key(up, mode="layer", layer=1)
    assert feature_cache_key(up, mode="layer", layer=2) != key
    before = weights_hash(up)
    up.features.config = dataclasses.replace(up.feature_config, cmvn=not up.feature_config.cmvn)
    assert weights_hash(up) == before and feature_cache_key(up, mode="layer", layer=1) != key


def test_save_and_load_round_trip_and_partial_files_miss(tmp_path):
    path = cache_file(tmp_path / "c", "dev", "abc")
    feats = {"u1": torch.randn(3, 4).half(), "u2": torch.randn(2, 5, 4).half()}
    assert load_features(path, ["u1"]) is None  # nothing stored yet
    save_features(path, feats)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temp file left behind
    got = load_features(path, ["u1", "u2"])
    assert all(torch.equal(got[k], v) for k, v in feats.items())
    assert load_features(path, ["u1", "u3"]) is None  # a file that lacks an utterance is recomputed
    save_features(None, feats)  # memory-only: nothing to write


def test_audio_changed_in_place_at_the_same_length_changes_the_key(tmp_path):
    import os

    import numpy as np
    import soundfile as sf

    from audiorep.data import Utterance
    from audiorep.probe.cache import utterance_ident

    path = tmp_path / "a.wav"
    sf.write(path, np.zeros(8000, dtype=np.float32), 16000)
    utts = [Utterance("a", str(path), 8000, 16000, "s", "", {})]
    before = utterance_ident(utts)
    st = os.stat(path)
    sf.write(path, np.full(8000, 0.5, dtype=np.float32), 16000)  # same length, other samples
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old mtime put back
    assert utterance_ident(utts) != before


def test_a_truncated_cache_file_is_rebuilt_with_a_warning(tmp_path, caplog):
    path = cache_file(tmp_path, "dev", "abc")
    save_features(path, {"u1": torch.randn(3, 4)})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with caplog.at_level("WARNING"):
        assert load_features(path, ["u1"]) is None  # a miss: the caller computes and rewrites it
    assert "unreadable feature cache" in caplog.text and len(caplog.records) == 1
    save_features(path, {"u1": torch.ones(3, 4)})
    assert torch.equal(load_features(path, ["u1"])["u1"], torch.ones(3, 4))
