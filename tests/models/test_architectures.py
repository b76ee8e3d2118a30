"""The architecture registry's contract, run for every registered family (timm's ``test_models`` style): it
builds from its config dict, runs a batch, round-trips save_pretrained -> audiorep.load and, when it declares
PretrainableEncoder, takes a pretraining step through the ``model.architecture=<name>`` config."""

from __future__ import annotations

import pytest
import torch

import audiorep
import audiorep.models  # noqa: F401  (registers every family)
from audiorep.config import build, to_dict
from audiorep.features import FeatureConfig
from audiorep.models.base import PretrainableEncoder
from audiorep.registry import get_architecture, list_architectures

ARCHITECTURES = list_architectures()


def _tiny(name: str):
    cls = get_architecture(name)
    return cls, build(cls.config_class, dict(cls.tiny_config), "tiny_config")


def test_the_registry_is_not_empty():
    assert "mockingjay" in ARCHITECTURES


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_builds_runs_a_batch_and_round_trips(name, tmp_path):
    cls, config = _tiny(name)
    assert build(cls.config_class, to_dict(config), "again") == config  # the config dict round-trips
    model = cls(config, FeatureConfig()).eval()
    wavs = torch.randn(2, 8000) * 0.1
    lens = torch.tensor([8000, 5000])
    with torch.no_grad():
        out = model(wavs, lens)
    assert len(out.hidden_states) == model.num_layers + 1
    assert out.last_hidden_state.shape[0] == 2 and out.last_hidden_state.shape[-1] == model.hidden_size
    assert torch.isfinite(out.last_hidden_state).all()
    again = audiorep.load(model.save_pretrained(tmp_path / name)).eval()
    assert type(again) is cls and again.config == config
    with torch.no_grad():
        back = again(wavs, lens)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(out.hidden_states, back.hidden_states))


@pytest.mark.parametrize("name", [n for n in ARCHITECTURES if issubclass(get_architecture(n), PretrainableEncoder)])
def test_pretrains_one_step(name, tmp_path):
    from audiorep.pretrain.config import load_config
    from audiorep.pretrain.run import pretrain

    cls = get_architecture(name)
    overrides = [f"model.architecture={name}"] + [f"model.{k}={v}" for k, v in cls.tiny_config.items()]
    cfg = load_config(None, overrides + ["data.train=synth", "data.num_workers=0", "data.batch_size=2",
                                         "data.max_seconds=0.5", "data.eval_split=null", "train.max_steps=1",
                                         "train.progress=false", f"out_dir={tmp_path / 'run'}"])
    assert type(cfg.encoder_config) is cls.config_class
    res = pretrain(cfg)
    assert res.step == 1 and res.final_dir is not None and len(res.logs) == 1
    assert torch.isfinite(torch.tensor(res.logs[0].loss))
    assert type(audiorep.load(res.final_dir)) is cls


def test_an_unknown_family_is_refused_where_the_config_is_read():
    from audiorep.errors import ConfigError
    from audiorep.pretrain.config import load_config

    with pytest.raises(ConfigError, match="unknown architecture 'nope'"):
        load_config(None, ["model.architecture=nope"])
