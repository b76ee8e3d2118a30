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
