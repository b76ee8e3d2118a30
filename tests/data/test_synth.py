"""The bundled synthetic corpus: it loads through the common API, labels line up, metadata is there.

Only a handful of audio files are decoded so the test stays fast.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import pytest
import torch

from audiorep.data import collate_waveforms, get_corpus, list_corpora, num_frames, read_frame_labels

# the generator is a recipe script (recipes/synth/), not part of the installed package
GENERATOR = Path(__file__).resolve().parents[2] / "recipes" / "synth"
if not (GENERATOR / "synth_gen.py").is_file():
    pytest.skip(f"corpus generator not found at {GENERATOR} (an installed package without the recipes)",
                allow_module_level=True)
sys.path.insert(0, str(GENERATOR))
from synth_gen import PHONES, fold_phone, frame_labels, make_speakers, split_corpus  # noqa: E402
from synth_text import STYLES, make_sentence, sentiment_score  # noqa: E402


@pytest.fixture(scope="module")
def synth():
    return get_corpus("synth")


def test_listed_and_counts(synth):
    assert "synth" in list_corpora()
    info = synth.info()
    assert info["speakers"] >= 24
    assert info["hours"] >= 0.5  # >= 30 minutes
    assert info["phone_classes"] == len(PHONES) == 41
    assert info["size_mb"] <= 25
    assert info["sample_rates"] == "16000"
    assert set(synth.splits) >= {"train", "dev", "test", "spk_train", "spk_dev", "spk_test"}


def test_splits(synth):
    by = {s: synth.manifest(s) for s in synth.splits}
    ids = {s: {u.id for u in v} for s, v in by.items()}
    assert not ids["train"] & ids["dev"] and not ids["train"] & ids["test"] and not ids["dev"] & ids["test"]
    assert ids["train"] | ids["dev"] | ids["test"] == ids["spk_train"] | ids["spk_dev"] | ids["spk_test"]
    spk = {s: {u.speaker for u in v} for s, v in by.items()}
    assert spk["train"] == spk["dev"] == spk["test"]  # speaker ID: every speaker in every split
    assert not spk["spk_train"] & spk["spk_dev"] and not spk["spk_train"] & spk["spk_test"]
    assert not spk["spk_dev"] & spk["spk_test"]
    for u in by["train"]:
        assert u.text and -3 <= u.labels["sentiment"] <= 3 and u.labels["style"] in STYLES
        assert u.labels["sentiment"] == sentiment_score(u.labels["lexical_polarity"], u.labels["style"])


def test_phone_labels_line_up_with_audio(synth):
    labels = read_frame_labels(synth.frame_labels, num_classes=41)
    utts = synth.utterances()
    assert {u.id for u in utts} == set(labels)
    for u in utts:  # from the manifest: every utterance, no decoding
        assert labels[u.id].numel() == num_frames(u.num_samples), u.id
    ds = synth.dataset("test", phones=True, label_tolerance=0)
    picks = [0, len(ds) // 2, len(ds) - 1]
    items = [ds[i] for i in picks]
    for it in items:  # decoded audio has the manifest's length, labels have T frames
        assert it["frame_labels"].numel() == num_frames(it["wav"].numel())
        assert it["frame_labels"][0] == 0 and it["frame_labels"][-1] == 0  # starts and ends in silence
        assert it["wav"].abs().max() > 0.05
    batch = collate_waveforms(items)
    assert batch["wavs"].shape[0] == 3 and batch["sentiment"].shape == (3,)
    assert len(set(batch["speaker"])) >= 2
    assert synth.phone_names()[0] == "sil"


def test_silence_labels_match_quiet_audio(synth):
    ds = synth.dataset("dev", phones=True)
    it = ds[1]
    wav, lab = it["wav"], it["frame_labels"]
    pad = torch.nn.functional.pad(wav, (200, 200))
    energy = pad.unfold(0, 400, 160)[: lab.numel()].pow(2).mean(1).sqrt()  # (T,)
    quiet = energy < 0.01 * energy.max()
    assert ((lab == 0) == quiet).float().mean() > 0.85


def test_sentiment_rule():
    assert sentiment_score(2.0, "emphatic") == 3.0  # 1.5 L clipped
    assert sentiment_score(-1.0, "emphatic") == -1.5
    assert sentiment_score(1.2, "neutral") == 1.2
    assert sentiment_score(2.0, "flat") == -1.0  # flipped and weakened
    assert sentiment_score(0.0, "flat") == 0.0
    with pytest.raises(ValueError):
        sentiment_score(1.0, "angry")


def test_sentence_generator_is_seeded():
    a = [make_sentence(random.Random("x")) for _ in range(1)]
    b = [make_sentence(random.Random("x")) for _ in range(1)]
    assert a == b
    rng = random.Random(0)
    sents = [make_sentence(rng) for _ in range(300)]
    pols = [s.polarity for s in sents]
    assert min(pols) < -2 and max(pols) > 2 and all(-3 <= p <= 3 for p in pols)
    assert any(" not " in s.text for s in sents) and any(", but " in s.text for s in sents)


def test_frame_labels_from_segments():
    segs = [("pau", 0.1), ("hh", 0.15), ("ax", 0.2), ("l", 0.3), ("ow", 0.5), ("pau", 0.6)]
    lab = frame_labels(segs, 9600, scale=1.0)  # 0.6 s
    assert len(lab) == num_frames(9600) == 61
    assert lab[:10] == [0] * 10 and lab[10] == PHONES.index("hh") and lab[-1] == 0
    fast = frame_labels(segs, 4800, scale=0.5)  # sox speed 2: times halve
    assert len(fast) == 31 and fast[5] == PHONES.index("hh")
    assert fold_phone("axr") == PHONES.index("er") and fold_phone("pau") == 0
    with pytest.raises(ValueError, match="not in the phone map"):
        fold_phone("qq")


def test_speaker_split_by_voice():
    spks = make_speakers()
    rows = [{"id": f"{s.name}-{i:03d}", "speaker": s.name} for s in spks for i in range(8)]
    sp = split_corpus(rows, spks, seed=0)
    assert len(sp["train"]) == 6 * len(spks) and len(sp["dev"]) == len(spks)
    assert len({r["speaker"] for r in sp["spk_test"]}) == 6  # one variant of each base voice
