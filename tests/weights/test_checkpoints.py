"""Saved models and s3prl checkpoints: bounded, type-checked configs, a tight unpickler, finite weights.

The s3prl-layout files are written by audiorep's own exporter (the layout s3prl reads), so these tests
run without s3prl installed.
"""

from __future__ import annotations

import codecs
import io
import json
import pickle
import time

import numpy as np
import pytest
import torch

import audiorep
from audiorep.cli import main
from audiorep.weights.s3prl import export_s3prl_checkpoint, load_s3prl_checkpoint
from audiorep.safe_pickle import restricted_load
from audiorep.errors import CheckpointError, ConfigError
from audiorep.models import MockingjayConfig, MockingjayModel, SpecPredictionHead

SMALL = dict(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)


@pytest.fixture
def folder(tmp_path):
    return MockingjayModel(MockingjayConfig(**SMALL)).save_pretrained(tmp_path / "m")


@pytest.fixture
def s3prl_states(tmp_path):
    """An s3prl-layout checkpoint (with head) as the dict torch.load gives."""
    m = MockingjayModel(MockingjayConfig(**SMALL, share_layers=True))
    export_s3prl_checkpoint(m, tmp_path / "ok.ckpt", head=SpecPredictionHead(m.config))
    return torch.load(tmp_path / "ok.ckpt", weights_only=False)


def _edit_config(folder, **changes):
    meta = json.loads((folder / "config.json").read_text())
    for key, value in changes.items():
        section, _, field = key.rpartition(".")
        (meta[section] if section else meta)[field] = value
    (folder / "config.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("key, value, message", [
    ("model.hidden_size", "64", r"MockingjayConfig.hidden_size must be an integer, got '64' \(str\)"),
    ("model.num_layers", 10**9, r"MockingjayConfig.num_layers must lie in \[1, 1024\], got 1000000000"),
    ("model.num_heads", 2.0, r"num_heads must be an integer, got 2.0 \(float\)"),
    ("model.share_layers", "yes", "share_layers must be true or false"),
    ("model.dropout", "0.1", "dropout must be a number"),
    ("model.attention_backend", "bogus", "attention_backend must be one of auto, sdpa, reference, triton"),
    ("model.intermediate_size", 262_144, r"about .*e9 parameters"),
    ("features.n_mels", "80", "FeatureConfig.n_mels must be an integer"),
    ("features.sample_rate", 10**12, r"sample_rate must lie in"),
    ("format_version", "abc", "format_version must be an integer, got 'abc'"),
])
def test_bad_config_json_fields_are_refused_where_parsed(folder, key, value, message):
    if key == "model.intermediate_size":
        _edit_config(folder, **{"model.hidden_size": 16384, "model.num_heads": 16, "model.num_layers": 12})
    _edit_config(folder, **{key: value})
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=message) as err:
        audiorep.load(folder)
    assert time.monotonic() - t0 < 5  # refused, not built
    assert "config.json" in str(err.value) and "\n" not in str(err.value)


def test_the_cli_names_the_bad_field_in_one_line(folder, tmp_path, capsys):
    _edit_config(folder, **{"model.attention_backend": "bogus"})
    wav = tmp_path / "a.wav"
    import soundfile as sf

    sf.write(wav, np.zeros(1600, np.float32), 16000)
    assert main(["extract", str(folder), str(wav), "--out", str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "attention_backend must be one of" in err
    assert not (tmp_path / "o.safetensors").exists()


def test_a_huge_shared_layer_count_in_an_s3prl_checkpoint_is_refused_fast(s3prl_states, tmp_path):
    s3prl_states["Upstream_Config"]["transformer"]["num_hidden_layers"] = 10**9
    torch.save(s3prl_states, tmp_path / "deep.ckpt")
    t0 = time.monotonic()
    with pytest.raises(CheckpointError, match=r"deep.ckpt: upstream config: .*num_layers must lie in \[1, 1024\]"):
        audiorep.load(tmp_path / "deep.ckpt")
    assert time.monotonic() - t0 < 5


def test_bad_attention_backend_from_the_environment_is_a_config_error(monkeypatch):
    """The switches are read once per process; a bad value fails there, in one line naming the variable."""
    import audiorep.kernels.config as kc

    monkeypatch.setenv("AUDIOREP_ATTENTION", "bogus")
    with pytest.raises(ConfigError, match="AUDIOREP_ATTENTION='bogus'"):
        kc.KernelConfig.from_env()
    monkeypatch.setattr(kc, "_config", None)  # as in a fresh process: the first model reads the environment
    with pytest.raises(ConfigError, match="AUDIOREP_ATTENTION='bogus'"):
        MockingjayModel(MockingjayConfig(**SMALL))


def _break(states, how):
    t = states["Transformer"]
    if how == "transformer_list":
        states["Transformer"] = list(t.values())
    elif how == "audio_input_string":
        states["Upstream_Config"]["audio"]["input"] = "mel"
    elif how == "spec_transform_1d":
        t["input_representations.spec_transform.weight"] = torch.zeros(80)
    elif how == "query_shape":
        t["encoder.layer.0.attention.self.query.weight"] = torch.zeros(16, 8)
    elif how == "string_tensor":
        t["encoder.layer.0.output.dense.bias"] = "zeros"
    elif how == "head_without_dense":
        del states["SpecHead"]["dense.weight"]


@pytest.mark.parametrize("how, message", [
    ("transformer_list", "'Transformer' must be a dict of tensors, got list"),
    ("audio_input_string", "audio.input must be a mapping, got str 'mel'"),
    ("spec_transform_1d", r"spec_transform.weight must be a \(hidden, input\) matrix, got shape \(80,\)"),
    ("query_shape", r"attention.self.query.weight has shape \(16, 8\), expected \(16, 16\)"),
    ("string_tensor", "'Transformer' holds str 'zeros' at 'encoder.layer.0.output.dense.bias' where a tensor belongs"),
    ("head_without_dense", "'SpecHead' lacks dense.weight"),
])
def test_broken_s3prl_layouts_are_one_line_errors(s3prl_states, tmp_path, capsys, how, message):
    _break(s3prl_states, how)
    path = tmp_path / f"{how}.ckpt"
    torch.save(s3prl_states, path)
    with pytest.raises(CheckpointError, match=message) as err:
        load_s3prl_checkpoint(path, with_head=True)  # what convert reads (load skips the head)
    assert str(path) in str(err.value)
    assert main(["convert", str(path), str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_numpy_values_in_protocol_2_checkpoints_are_read(s3prl_states, tmp_path):
    states = {**s3prl_states, "x": np.float64(1), "arr": np.arange(4, dtype=np.float32), "n": np.int64(3)}
    torch.save(states, tmp_path / "np.ckpt")  # torch.save's default: protocol 2, bytes as _codecs.encode
    assert audiorep.load(tmp_path / "np.ckpt").num_layers == 1


def test_protocol_2_numpy_pickles_round_trip_through_the_restricted_unpickler():
    data = {"f": np.float64(1.5), "a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": bytearray(b"xy"),
            "o": np.array(["id-1", 2], dtype=object), "s": {1, 2}}
    for protocol in (2, 3, 4, 5):
        out = restricted_load(io.BytesIO(pickle.dumps(data, protocol=protocol)), "t.pkl")
        assert out["f"] == 1.5 and np.array_equal(out["a"], data["a"]) and out["b"] == b"xy"
        assert list(out["o"]) == ["id-1", 2] and out["s"] == {1, 2}


class _Encode:
    def __init__(self, inner, codec):
        self.inner, self.codec = inner, codec

    def __reduce__(self):
        return codecs.encode, (self.inner, self.codec)


class _Call:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def test_nested_codecs_encode_cannot_blow_up_memory():
    bomb = "A" * 1000
    for _ in range(40):  # each hex level doubles: 2**40 KB if it ran
        bomb = _Encode(bomb, "hex")
    payload = pickle.dumps(bomb, protocol=2)
    assert len(payload) < 2000
    t0 = time.monotonic()
    with pytest.raises(pickle.UnpicklingError, match="only latin-1 strings"):
        restricted_load(io.BytesIO(payload), "bomb.pkl")
    assert time.monotonic() - t0 < 1


@pytest.mark.parametrize("obj", [_Call(np.ndarray, (10**12,)), _Call(bytearray, 10**12),
                                 _Encode(b"\x00" * 10, "base64")])
def test_size_arguments_from_the_file_are_not_allocated(obj):
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        restricted_load(io.BytesIO(pickle.dumps(obj, protocol=2)), "big.pkl")


def test_nan_weights_are_refused_naming_file_and_tensor(folder, s3prl_states, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(folder / "model.safetensors")
    state["layers.0.ffn_in.weight"][3, 2] = float("nan")
    save_file(state, folder / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"m/model.safetensors: tensor 'layers.0.ffn_in.weight' holds 1 NaN"):
        audiorep.load(folder)
    s3prl_states["Transformer"]["encoder.layer.0.output.dense.weight"][0, 0] = float("inf")
    torch.save(s3prl_states, tmp_path / "inf.ckpt")
    with pytest.raises(CheckpointError, match=r"inf.ckpt: 'Transformer': tensor 'encoder.layer.0.output.dense.weight'"):
        audiorep.load(tmp_path / "inf.ckpt")
