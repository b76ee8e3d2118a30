"""Manifests, datasets, collate and the bucketed sampler on a tiny corpus written by the test."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from audiorep.data import (
    AudioDataset,
    LengthBucketBatchSampler,
    SkipTracker,
    Utterance,
    collate_waveforms,
    get_corpus,
    num_frames,
    read_frame_labels,
    read_manifest,
    track_skips,
    write_frame_labels,
    write_label_names,
    write_manifest,
)
from audiorep.errors import AudioError, ConfigError


def _tone(n: int, f: float = 220.0, sr: int = 16000) -> np.ndarray:
    return (0.3 * np.sin(2 * np.pi * f * np.arange(n) / sr)).astype(np.float32)


@pytest.fixture()
def tiny(tmp_path):
    """6 utterances of 2 speakers with frame labels; returns (folder, utterances)."""
    (tmp_path / "wav").mkdir()
    utts, labels = [], {}
    for i, n in enumerate([1600, 3200, 4000, 8000, 2400, 5600]):
        p = tmp_path / "wav" / f"u{i}.flac"
        sf.write(p, _tone(n, 200 + 30 * i), 16000)
        utts.append(Utterance(f"u{i}", str(p), n, 16000, f"s{i % 2}", f"text {i}", {"sentiment": i - 2.5}))
        labels[f"u{i}"] = [i % 3] * num_frames(n)
    write_manifest(utts, tmp_path / "train.jsonl")
    write_frame_labels(labels, tmp_path / "converted_aligned_phones.txt")
    write_label_names(["sil", "aa", "b"], tmp_path / "phones.txt")
    return tmp_path, utts


def test_manifest_roundtrip_relative_paths(tiny):
    root, utts = tiny
    raw = (root / "train.jsonl").read_text().splitlines()
    assert json.loads(raw[0])["path"] == "wav/u0.flac"  # relative on disk
    back = read_manifest(root / "train.jsonl")
    assert back == utts
    assert back[3].duration == pytest.approx(0.5)


@pytest.mark.parametrize(
    "row, msg",
    [
        ("{not json", "not valid JSON"),
        ('{"id": "a", "path": "x.wav", "num_samples": 10, "sample_rate": 16000}', "missing field"),
        ('{"id": "a", "path": "x.wav", "num_samples": -1, "sample_rate": 16000, "speaker": "s"}', "positive integer"),
        ('{"id": "a", "path": "x.wav", "num_samples": 5, "sample_rate": 16000, "speaker": "s", "lbl": 1}', "unknown field"),
        ('{"id": "u0", "path": "x.wav", "num_samples": 5, "sample_rate": 16000, "speaker": "s"}', "duplicate"),
    ],
)
def test_manifest_errors_name_file_and_line(tiny, row, msg):
    root, _ = tiny
    bad = root / "bad.jsonl"
    bad.write_text((root / "train.jsonl").read_text().splitlines()[0] + "\n\n" + row + "\n")
    with pytest.raises(ConfigError, match=rf"bad\.jsonl:3: .*{msg}"):
        read_manifest(bad)


def test_dataset_items_and_collate(tiny):
    root, _ = tiny
    ds = AudioDataset(root / "train.jsonl", frame_labels=root / "converted_aligned_phones.txt")
    item = ds[1]
    assert item["wav"].shape == (3200,) and item["wav"].dtype == torch.float32
    assert item["speaker"] == "s1" and item["sentiment"] == -1.5
    assert item["frame_labels"].shape == (21,)
    batch = collate_waveforms([ds[0], ds[3]])
    assert batch["wavs"].shape == (2, 8000)
    assert batch["wav_lens"].tolist() == [1600, 8000]
    assert batch["wavs"][0, 1600:].abs().sum() == 0
    assert batch["frame_labels"].shape == (2, 51)
    assert (batch["frame_labels"][0, 11:] == -100).all() and (batch["frame_labels"][0, :11] == 0).all()
    assert batch["frame_lens"].tolist() == [11, 51]
    assert batch["sentiment"].tolist() == [-2.5, 0.5]
    assert batch["id"] == ["u0", "u3"] and batch["skipped"] == []


def test_random_crop_is_seeded_and_crops_labels(tiny):
    root, _ = tiny
    kw = dict(max_samples=1000, seed=3, frame_labels=root / "converted_aligned_phones.txt")
    a, b = AudioDataset(root / "train.jsonl", **kw), AudioDataset(root / "train.jsonl", **kw)
    x, y = a[3], b[3]
    assert x["wav"].shape == (1000,) and torch.equal(x["wav"], y["wav"])
    assert x["crop_start"] % 160 == 0
    assert x["frame_labels"].numel() == num_frames(1000)
    full = AudioDataset(root / "train.jsonl")[3]["wav"]
    assert torch.equal(full[x["crop_start"] : x["crop_start"] + 1000], x["wav"])
    starts = set()
    for epoch in range(6):
        a.set_epoch(epoch)
        starts.add(a[3]["crop_start"])
    assert len(starts) > 1  # crops change with the epoch
    assert a[0]["wav"].shape == (1000,) and AudioDataset(root / "train.jsonl", max_samples=2000)[0]["wav"].numel() == 1600


def _corrupt(root):
    utts = read_manifest(root / "train.jsonl")
    (root / "wav" / "empty.wav").write_bytes(b"")
    (root / "wav" / "junk.flac").write_bytes(b"this is not audio")
    sf.write(root / "wav" / "r8k.wav", _tone(800, sr=8000), 8000)
    utts += [
        Utterance("missing", str(root / "wav" / "nope.flac"), 100, 16000, "s0"),
        Utterance("empty", str(root / "wav" / "empty.wav"), 100, 16000, "s0"),
        Utterance("junk", str(root / "wav" / "junk.flac"), 100, 16000, "s1"),
        Utterance("r8k", str(root / "wav" / "r8k.wav"), 800, 8000, "s1"),
    ]
    write_manifest(utts, root / "bad.jsonl")
    return root / "bad.jsonl"


def test_bad_files_raise_with_the_path(tiny):
    root, _ = tiny
    ds = AudioDataset(_corrupt(root))
    for i, what in [(6, "nope.flac: no such"), (7, "empty.wav"), (8, "junk.flac: cannot read"), (9, "8000 Hz, expected 16000")]:
        with pytest.raises(AudioError, match=what):
            ds[i]
    assert AudioDataset(root / "bad.jsonl", resample=True)[9]["wav"].numel() == 1600


def test_skip_mode_reports_through_workers(tiny, caplog):
    root, _ = tiny
    ds = AudioDataset(_corrupt(root), on_error="skip")
    loader = DataLoader(ds, batch_size=4, collate_fn=collate_waveforms, num_workers=2)
    tracker = SkipTracker()
    seen = []
    with caplog.at_level("WARNING"):
        for batch in track_skips(loader, tracker):
            seen += batch["id"]
    assert sorted(seen) == [f"u{i}" for i in range(6)]
    assert tracker.count == 4
    assert {s[0] for s in tracker.skipped} == {"missing", "empty", "junk", "r8k"}
    assert "skipped 4 file(s)" in caplog.text and "nope.flac" in caplog.text


def test_label_frame_mismatch_is_reported_not_truncated(tiny):
    root, utts = tiny
    labels = read_frame_labels(root / "converted_aligned_phones.txt")
    labels["u1"] = labels["u1"][:-2]  # within tolerance: padded back
    labels["u2"] = torch.cat([labels["u2"], torch.zeros(5, dtype=torch.long)])  # 5 too many
    ds = AudioDataset(utts, frame_labels=labels)
    assert ds[1]["frame_labels"].numel() == num_frames(3200)
    with pytest.raises(AudioError, match=r"u2.*31 frame labels but the audio makes 26 frames"):
        ds[2]
    with pytest.raises(AudioError, match="no frame labels"):
        AudioDataset(utts, frame_labels={"u0": labels["u0"]})[1]
    bad = root / "bad_labels.txt"
    bad.write_text("u0 1 2 x\n")
    with pytest.raises(ConfigError, match="bad_labels.txt:1"):
        read_frame_labels(bad)


def test_wrong_manifest_length_is_an_error(tiny):
    root, utts = tiny
    utts[0].num_samples = 1500
    with pytest.raises(AudioError, match="manifest says 1500 samples, the file has 1600"):
        AudioDataset(utts)[0]


def test_bucket_sampler_ddp_semantics():
    lengths = [int(x) for x in torch.randint(100, 10000, (103,), generator=torch.Generator().manual_seed(0))]
    ranks = [LengthBucketBatchSampler(lengths, 8, num_replicas=3, rank=r, seed=5, bucket_pools=4) for r in range(3)]
    per_rank = [list(s) for s in ranks]
    assert len({len(b) for b in per_rank}) == 1 and len(per_rank[0]) == len(ranks[0])
    covered = {i for b in per_rank for batch in b for i in batch}
    assert covered == set(range(103))
    # deterministic given seed + epoch, different across epochs
    assert list(LengthBucketBatchSampler(lengths, 8, num_replicas=3, rank=1, seed=5, bucket_pools=4)) == per_rank[1]
    ranks[1].set_epoch(1)
    assert list(ranks[1]) != per_rank[1]
    # batches are length-sorted pools: padding much smaller than random batching
    waste = sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in per_rank[0])
    assert waste < 0.25 * sum(lengths[i] for b in per_rank[0] for i in b)


def test_bucket_sampler_resume_and_budget():
    lengths = list(range(100, 5000, 50))
    s = LengthBucketBatchSampler(lengths, 6, seed=1)
    s.set_epoch(2)
    full = list(s)
    it = iter(s)
    for _ in range(3):
        next(it)
    state = s.state_dict()
    t = LengthBucketBatchSampler(lengths, 6, seed=1)
    t.load_state_dict(state)
    assert list(t) == full[3:]
    assert list(t) == full  # the next pass is a whole epoch again
    budget = LengthBucketBatchSampler(lengths, 64, max_batch_samples=12000, seed=0)
    for b in budget:
        assert max(lengths[i] for i in b) * len(b) <= 12000
    with pytest.raises(ConfigError, match="exceed max_batch_samples"):
        LengthBucketBatchSampler([100, 20000], 4, max_batch_samples=12000)


def test_sampler_with_dataloader_workers(tiny):
    root, _ = tiny
    ds = AudioDataset(root / "train.jsonl")
    sampler = LengthBucketBatchSampler(ds.lengths, 2, seed=0)
    loader = DataLoader(ds, batch_sampler=sampler, collate_fn=collate_waveforms, num_workers=2)
    ids = [i for batch in loader for i in batch["id"]]
    assert sorted(ids) == [f"u{i}" for i in range(6)]


def test_get_corpus_folder(tiny):
    root, _ = tiny
    c = get_corpus(root)
    assert c.splits == ["train"] and c.phone_names() == ["sil", "aa", "b"]
    info = c.info()
    assert info["speakers"] == 2 and info["utterances"] == 6 and info["phone_classes"] == 3
    ds = c.dataset("train", phones=True)
    assert ds[0]["frame_labels"].numel() == 11
    with pytest.raises(ConfigError, match="no split 'dev'"):
        c.manifest("dev")
    with pytest.raises(ConfigError, match="unknown corpus"):
        get_corpus(root / "nothing")


@pytest.mark.parametrize("fmt", ["flac", "wav", "ogg"])
def test_a_crop_decodes_only_its_window_and_equals_the_whole_read(tmp_path, fmt, monkeypatch):
    """Without frame labels a crop reads just its window: same start, same samples as cropping a whole read."""
    import audiorep.data.dataset as dataset_module

    windows = []  # (start, frames) of every read the dataset asks for
    real_read = dataset_module.read_audio_window

    def recording_read(path, start=0, frames=None):
        windows.append((start, frames))
        return real_read(path, start, frames)

    monkeypatch.setattr(dataset_module, "read_audio_window", recording_read)
    utts = []
    for i, n in enumerate([8000, 12345, 3000]):
        p = tmp_path / f"u{i}.{fmt}"
        sf.write(p, _tone(n, 180 + 40 * i), 16000)
        utts.append(Utterance(f"u{i}", str(p), n, 16000, "s0"))
    windowed = AudioDataset(utts, max_samples=2000, seed=1)
    labels = {u.id: torch.zeros(num_frames(u.num_samples), dtype=torch.long) for u in utts}
    whole = AudioDataset(utts, max_samples=2000, seed=1, frame_labels=labels)  # labels: the whole-read path
    for epoch in range(3):
        windowed.set_epoch(epoch), whole.set_epoch(epoch)
        for i in range(3):
            a, b = windowed[i], whole[i]
            assert a["crop_start"] == b["crop_start"] and torch.equal(a["wav"], b["wav"])
    assert (windowed[0]["crop_start"], 2000) in windows  # the cropped file was read as a window
    utts[1].num_samples = 20000  # a manifest longer than its file: the window runs past the end
    with pytest.raises(AudioError, match="manifest says 20000 samples, the file has 12345"):
        AudioDataset(utts, max_samples=2000)[1]
