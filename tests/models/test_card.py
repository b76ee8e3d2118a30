"""The model card save_pretrained writes: content from the folder and the run, and a user's README kept."""

from __future__ import annotations

import json

import torch

from audiorep.features import FeatureConfig
from audiorep.models.card import CARD_MARK
from audiorep.models.mockingjay import MockingjayConfig, MockingjayModel


def _model():
    torch.manual_seed(0)
    cfg = MockingjayConfig(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2, share_layers=True)
    return MockingjayModel(cfg, FeatureConfig())


def test_card_describes_the_model_and_the_run(tmp_path):
    model = _model()
    (tmp_path / "eval.json").write_text(json.dumps({"split": "test", "masked_l1": 0.4321}))
    folder = model.save_pretrained(tmp_path / "final", training={"data": "synth", "steps": 300})
    card = (folder / "README.md").read_text()
    assert card.splitlines()[0] == CARD_MARK
    n = sum(p.numel() for p in model.parameters())
    assert f"{n:,} parameters" in card and "AALBERT" in card
    assert "80 bins" in card and "25.0 ms Hann window" in card
    assert "- steps: 300" in card and "| masked_l1 | 0.4321 |" in card
    assert 'audiorep.load("hf-hub:' in card and "--to s3prl" in card and "--to onnx" in card


def test_own_card_replaced_user_readme_kept(tmp_path):
    folder = _model().save_pretrained(tmp_path / "m")
    _model().save_pretrained(folder, training={"steps": 7})
    assert "- steps: 7" in (folder / "README.md").read_text()  # audiorep's own card is rewritten
    (folder / "README.md").write_text("# my notes\n")
    _model().save_pretrained(folder, training={"steps": 8})
    assert (folder / "README.md").read_text() == "# my notes\n"
