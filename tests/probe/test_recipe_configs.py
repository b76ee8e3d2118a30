"""The probe recipes train with the stopping rule docs/downstream.md states, so their figures are converged ones."""

from pathlib import Path

import pytest

from audiorep.probe.run import DownstreamConfig, load_config

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "recipes" / "configs" / "downstream").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_recipe_config_keeps_the_stated_stopping_rule(path):
    cfg = load_config(path)
    rule = DownstreamConfig()  # the defaults: at most 100 epochs, lr halved after 3 flat epochs, stop after 8
    assert (cfg.epochs, cfg.patience, cfg.plateau_patience) == (100, 8, 3)
    assert (cfg.epochs, cfg.patience, cfg.plateau_patience) == (rule.epochs, rule.patience, rule.plateau_patience)


def test_there_are_recipe_configs_to_check():
    assert {p.stem for p in CONFIGS} >= {"phone", "speaker", "sentiment"}
