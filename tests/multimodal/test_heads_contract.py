"""The fusion-head registry's contract, run for every registered head (timm's test_models style): the head builds
from its registered config with the parts it declares it needs, one batch goes forward and backward, and its
config round-trips (alone and inside a FusionConfig). A new head file is covered without editing this test;
a new kind of need fails here until it gets a tiny maker below."""

from __future__ import annotations

import pytest
import torch

from audiorep import config
from audiorep.multimodal import FusionConfig, TextEncoder, build_head
from audiorep.multimodal.heads import HEADS, NEEDS

from test_fusion import _tiny_gpt2, _word_tokenizer  # tiny transformers models, shared with the head tests

AUDIO_DIM, VISION_DIM, TEXT_DIM = 5, 7, 32


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny models: extra intra-op threads only fight the other test processes on a shared 2-core machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _parts(needs) -> dict:
    """build_head keywords for each need, at test size."""
    makers = {
        "text": lambda: {"text_encoder": TextEncoder(feature_dim=TEXT_DIM)},  # MMSA-style text features
        "decoder_lm": lambda: {"decoder": (_word_tokenizer(), _tiny_gpt2())},
    }
    missing = sorted(set(NEEDS) - set(makers))
    assert not missing, f"no test maker for the need(s) {missing}: add one to _parts"
    out = {}
    for need in needs:
        out.update(makers[need]())
    return out


def _batch(head, n: int = 4):
    g = torch.Generator().manual_seed(0)
    texts = ["the movie was good", "bad", "not very fine", "a bit boring"][:n]
    feats = [torch.randn(6, TEXT_DIM, generator=g) for _ in texts]
    audio = torch.randn(n, 12, AUDIO_DIM, generator=g)  # (B, T, D)
    alens = torch.tensor([12, 9, 5, 3][:n])
    vision = torch.randn(n, 8, VISION_DIM, generator=g) if head.uses_vision else None  # (B, Tv, Dv)
    vlens = torch.tensor([8, 2, 5, 1][:n]) if head.uses_vision else None
    labels = torch.tensor([1.5, -2.0, 0.3, -0.1][:n])
    return head.batch_text(texts, feats), audio, alens, vision, vlens, labels


@pytest.mark.parametrize("name", sorted(HEADS))
@pytest.mark.parametrize("vision", [None, VISION_DIM], ids=["audio", "audio+vision"])
def test_head_builds_and_trains_one_batch(name, vision):
    spec = HEADS[name]
    assert spec.needs and spec.needs <= set(NEEDS) and spec.summary
    torch.manual_seed(0)
    head = build_head(name, AUDIO_DIM, vision, **_parts(spec.needs))
    assert isinstance(head, spec.head)
    text, audio, alens, vis, vlens, labels = _batch(head)
    head.setup_train_set(labels)
    head.train()
    out = head(text, audio, alens, vis, vlens, labels=labels, index=torch.arange(len(labels)))
    assert out.pred.shape == (len(labels),) and torch.isfinite(out.losses["total"])
    out.losses["total"].backward()
    trained = [p for p in head.parameters() if p.requires_grad]
    assert trained and any(p.grad is not None and p.grad.abs().sum() > 0 for p in trained)
    head.on_train_batch_end(out, labels, torch.arange(len(labels)), 1)
    head.eval()
    with torch.no_grad():
        assert head(text, audio, alens, vis, vlens).pred.shape == (len(labels),)


@pytest.mark.parametrize("name", sorted(HEADS))
def test_head_config_round_trips(name):
    spec = HEADS[name]
    cfg = spec.make_config({"audio_dim": AUDIO_DIM, "vision_dim": VISION_DIM}, {})
    assert config.build(spec.config, config.to_dict(cfg), name) == cfg
    fusion = FusionConfig(head=name, seeds=[0])
    assert config.build(FusionConfig, config.to_dict(fusion), name) == fusion
    with pytest.raises(Exception, match="unknown"):
        spec.make_config({}, {"no_such_field": 1})
