"""The small text LMs' cache: folder names that change with what a folder holds."""

from __future__ import annotations

import dataclasses
import hashlib
import json

from audiorep.multimodal import lm as lm_mod
from audiorep.multimodal.teasel_config import SmallRobertaConfig
from audiorep.multimodal.text import SmallGPT2Config, load_decoder

TEXTS = ["the movie was good", "the plot was really bad", "quite fine actors", "the actors were good"]


def settings_only_key(texts, cfg) -> str:
    """The folder hash as it was before the cache format entered it (settings + transcripts)."""
    h = hashlib.sha256(json.dumps(dataclasses.asdict(cfg), sort_keys=True).encode())
    for t in texts:
        h.update(t.encode() + b"\n")
    return h.hexdigest()[:12]


def test_small_gpt2_cache_name_carries_its_format_so_stale_folders_are_not_reused(monkeypatch):
    from audiorep.weights.cache import cache_dir

    cfg = SmallGPT2Config(vocab_size=300, hidden_size=16, num_layers=1, num_heads=2, max_positions=16, epochs=1,
                          batch_size=2)
    # a decoder cached before the tokenizer fix (empty vocabulary) sits under the settings-only name
    stale = cache_dir() / f"fusion/gpt2-{settings_only_key(TEXTS, cfg)}"
    stale.mkdir(parents=True)
    (stale / "config.json").write_text("{}")
    folder = lm_mod.cached_small_lm(TEXTS, cfg)
    assert folder != stale and folder.name.startswith("gpt2-")
    tok, _ = load_decoder(folder)
    assert len(tok("the movie was good")["input_ids"]) > 1  # a real vocabulary, not one token per transcript
    assert lm_mod.cached_small_lm(TEXTS, cfg) == folder  # the new folder is reused
    monkeypatch.setattr(lm_mod, "GPT2_CACHE_FORMAT", lm_mod.GPT2_CACHE_FORMAT + 1)
    assert lm_mod._cache_key(TEXTS, cfg) != folder.name.removeprefix("gpt2-")  # a future format: a new folder


def test_small_roberta_cache_name_is_unchanged():
    """The RoBERTa tokenizer was always built right: its cached LMs (and results naming them) stay valid."""
    cfg = SmallRobertaConfig()
    assert lm_mod._cache_key(TEXTS, cfg) == settings_only_key(TEXTS, cfg)
