"""Corpus readers on small fake LibriSpeech / VoxCeleb1 / CMU-MOSI / MMSA trees written by the tests."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

from audiorep.data import AudioDataset, collate_waveforms, num_frames, read_manifest
from audiorep.data.mmsa import MMSADataset, collate_mmsa, read_mmsa_pickle
from audiorep.data.readers import read_librispeech, read_mosi, read_voxceleb1
from audiorep.errors import AudioError, ConfigError


def _wav(path, n, sr=16000, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32), sr, format=fmt)


def _fake_librispeech(root):
    lines = []
    for spk, chap in [("19", "198"), ("26", "495")]:
        d = root / "train-clean-100" / spk / chap
        trans = []
        for k in range(3):
            uid = f"{spk}-{chap}-{k:04d}"
            n = 1600 * (k + 2)
            _wav(d / f"{uid}.flac", n)
            trans.append(f"{uid} HELLO WORLD NUMBER {k}")
            lines.append(f"{uid} " + " ".join(str(k % 5) for _ in range(num_frames(n))))
        (d / f"{spk}-{chap}.trans.txt").write_text("\n".join(trans) + "\n")
    (root / "converted_aligned_phones.txt").write_text("\n".join(lines) + "\n")


def test_librispeech(tmp_path):
    _fake_librispeech(tmp_path)
    res = read_librispeech(tmp_path)
    utts = res.splits["train-clean-100"]
    assert len(utts) == 6 and {u.speaker for u in utts} == {"19", "26"}
    assert utts[0].text == "hello world number 0" and utts[0].num_samples == 3200
    assert res.frame_labels == tmp_path / "converted_aligned_phones.txt"
    ds = AudioDataset(utts, frame_labels=res.frame_labels)
    batch = collate_waveforms([ds[0], ds[5]])
    assert batch["frame_labels"].shape == (2, num_frames(1600 * 4))
    # a transcript line without audio: error naming the transcript, or a reported skip
    os.remove(tmp_path / "train-clean-100" / "26" / "495" / "26-495-0001.flac")
    with pytest.raises(AudioError, match=r"26-495\.trans\.txt:2: no audio file 26-495-0001\.flac"):
        read_librispeech(tmp_path)
    res = read_librispeech(tmp_path, on_error="skip")
    assert len(res.splits["train-clean-100"]) == 5 and len(res.skipped) == 1
    with pytest.raises(ConfigError, match="no \\*.trans.txt"):
        read_librispeech(_empty(tmp_path))


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_voxceleb1(tmp_path):
    files = []
    for spk in ("id10001", "id10002"):
        for vid in ("1zcIwhmdeo4", "7w0IBEWc9Qw"):
            for k in (1, 2):
                rel = f"{spk}/{vid}/{k:05d}.wav"
                _wav(tmp_path / "wav" / rel, 4000 + 100 * k)
                files.append(rel)
    (tmp_path / "iden_split.txt").write_text(
        "\n".join(f"{1 + i % 3} {rel}" for i, rel in enumerate(files)) + "\n"
    )
    res = read_voxceleb1(tmp_path)
    assert {k: len(v) for k, v in res.splits.items()} == {"train": 3, "dev": 3, "test": 2}
    u = res.splits["train"][0]
    assert u.id == "id10001-1zcIwhmdeo4-00001" and u.speaker == "id10001" and u.num_samples == 4100
    (tmp_path / "iden_split.txt").write_text("1 id10001/1zcIwhmdeo4/00001.wav\n3 id10009/x/00001.wav\n")
    with pytest.raises(AudioError, match=r"iden_split\.txt:2: .*id10009/x/00001\.wav listed in the split file does not exist"):
        read_voxceleb1(tmp_path)
    assert len(read_voxceleb1(tmp_path, on_error="skip").skipped) == 1
    (tmp_path / "iden_split.txt").write_text("7 id10001/1zcIwhmdeo4/00001.wav\n")
    with pytest.raises(ConfigError, match=r"iden_split\.txt:1: expected"):
        read_voxceleb1(tmp_path)
    os.remove(tmp_path / "iden_split.txt")
    assert len(read_voxceleb1(tmp_path).splits["all"]) == 8


def test_mosi_raw(tmp_path):
    rows = ["video_id,clip_id,text,label,label_T,label_A,label_V,annotation,mode"]
    for i, (vid, clip, lab, mode) in enumerate([("03bSnISJMiM", 1, 2.4, "train"), ("03bSnISJMiM", 2, -1.0, "valid"),
                                                 ("0h-zjBukYpk", 3, 0.0, "test"), ("0h-zjBukYpk", 4, -3.0, "train")]):
        _wav(tmp_path / "wav" / vid / f"{clip}.wav", 8000 + i)
        rows.append(f'{vid},{clip},"it was, like, fine",{lab},0,0,0,Neutral,{mode}')
    (tmp_path / "label.csv").write_text("\n".join(rows) + "\n")
    res = read_mosi(tmp_path / "wav", tmp_path / "label.csv")
    assert {k: len(v) for k, v in res.splits.items()} == {"train": 2, "dev": 1, "test": 1}
    u = res.splits["train"][1]
    assert u.labels == {"sentiment": -3.0} and u.speaker == "0h-zjBukYpk" and u.text == "it was, like, fine"
    ds = AudioDataset(res.splits["train"])
    assert ds[0]["sentiment"] == 2.4
    (tmp_path / "label.csv").write_text(rows[0] + "\n" + rows[1].replace(",2.4,", ",4.5,") + "\n")
    with pytest.raises(ConfigError, match=r"label\.csv:2: label 4\.5 outside"):
        read_mosi(tmp_path / "wav", tmp_path / "label.csv")
    (tmp_path / "label.csv").write_text("video_id,clip_id,label\n")
    with pytest.raises(ConfigError, match=r"missing column\(s\) \['mode'\]"):
        read_mosi(tmp_path / "wav", tmp_path / "label.csv")


def _mmsa_split(n, la=12, lv=9, L=10, seed=0):
    rng = np.random.default_rng(seed)
    audio = rng.standard_normal((n, la, 5)).astype(np.float32)
    vision = rng.standard_normal((n, lv, 20)).astype(np.float32)
    alen = rng.integers(3, la + 1, n)
    for i in range(n):
        audio[i, alen[i]:] = 0
        vision[i, 4 + i % 3:] = 0
    mask = (np.arange(L)[None] < rng.integers(2, L + 1, n)[:, None]).astype(np.float32)
    return {
        "raw_text": np.array([f"sentence {i}" for i in range(n)], dtype=object),
        "audio": audio, "vision": vision,
        "id": np.array([f"vid{i}$_${i}" for i in range(n)]),
        "text": rng.standard_normal((n, L, 768)).astype(np.float32),
        "text_bert": np.stack([rng.integers(0, 1000, (n, L)).astype(np.float32), mask, np.zeros((n, L), np.float32)], 1),
        "audio_lengths": list(alen + (np.arange(n) == 0)),  # one stored length is wrong, as in real files
        "vision_lengths": [4 + i % 3 for i in range(n)],
        "annotations": ["Positive"] * n,
        "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
    }


def test_mmsa_pickle(tmp_path):
    data = {"train": _mmsa_split(6), "valid": _mmsa_split(3, seed=1), "test": _mmsa_split(4, seed=2)}
    path = tmp_path / "unaligned_50.pkl"
    path.write_bytes(pickle.dumps(data, protocol=4))
    splits = read_mmsa_pickle(path)
    tr = splits["train"]
    assert len(tr) == 6 and len(splits["dev"]) == 3
    true_lengths = np.array(data["train"]["audio_lengths"]) - (np.arange(6) == 0)
    assert tr.audio_lengths.tolist() == true_lengths.tolist()
    assert tr.length_mismatches == {"audio_lengths": 1, "vision_lengths": 0}
    assert tr.text_lengths.tolist() == data["train"]["text_bert"][:, 1].sum(1).astype(int).tolist()
    loader = DataLoader(MMSADataset(tr), batch_size=4, collate_fn=collate_mmsa)
    b = next(iter(loader))
    assert b["audio"].shape[0] == 4 and b["audio"].shape[2] == 5 and b["audio"].shape[1] == int(b["audio_lens"].max())
    assert b["text_bert"].shape == (4, 3, 10) and b["labels"].dtype == torch.float32
    assert torch.equal(b["audio"][1, : b["audio_lens"][1]], torch.from_numpy(data["train"]["audio"][1, : b["audio_lens"][1]]))


def test_mmsa_bad_files(tmp_path):
    bad = _mmsa_split(4)
    bad["audio"] = bad["audio"][:3]
    p = tmp_path / "a.pkl"
    p.write_bytes(pickle.dumps({"train": bad}))
    with pytest.raises(ConfigError, match=r"\['train'\]\['audio'\]: 3 samples but regression_labels has 4"):
        read_mmsa_pickle(p)
    p.write_bytes(pickle.dumps({"train": {"audio": np.zeros((2, 3, 4))}}))
    with pytest.raises(ConfigError, match="missing key"):
        read_mmsa_pickle(p)
    p.write_bytes(pickle.dumps({"train": _mmsa_split(2), "evil": os.system}))
    with pytest.raises(ConfigError, match="refusing to unpickle"):
        read_mmsa_pickle(p)
    p.write_bytes(b"\x80\x04garbage")
    with pytest.raises(ConfigError, match="not a readable pickle"):
        read_mmsa_pickle(p)


def test_prepare_cli_writes_manifests(tmp_path, capsys):
    from audiorep.cli import main

    _fake_librispeech(tmp_path / "LibriSpeech")
    out = tmp_path / "manifests"
    assert main(["data", "prepare", "librispeech", str(tmp_path / "LibriSpeech"), str(out)]) == 0
    utts = read_manifest(out / "train-clean-100.jsonl")
    assert len(utts) == 6 and (out / "converted_aligned_phones.txt").is_file()
    capsys.readouterr()
    assert main(["data", "info", str(out)]) == 0
    info = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert info["speakers"] == "2" and info["utterances"] == "6"


def test_non_utf8_transcript_and_label_csv_name_the_file_and_line(tmp_path):
    _fake_librispeech(tmp_path / "ls")
    tf = tmp_path / "ls" / "train-clean-100" / "26" / "495" / "26-495.trans.txt"
    tf.write_bytes(tf.read_bytes().replace(b"NUMBER 1", "NUMB\u00c9R 1".encode("latin-1")))
    with pytest.raises(ConfigError, match=r"26-495\.trans\.txt: line 2: not UTF-8 text \(byte 0xc9 at offset"):
        read_librispeech(tmp_path / "ls")
    _wav(tmp_path / "wav" / "v1" / "1.wav", 8000)
    (tmp_path / "label.csv").write_bytes("video_id,clip_id,text,label,mode\nv1,1,caf\u00e9,1.0,train\n"
                                         .encode("latin-1"))
    with pytest.raises(ConfigError, match=r"label\.csv: line 2: not UTF-8 text \(byte 0xe9"):
        read_mosi(tmp_path / "wav", tmp_path / "label.csv")


def _row(**extra):
    import json

    row = {"id": "a", "path": "a.wav", "num_samples": 16000, "sample_rate": 16000, "speaker": "s"}
    return json.dumps({**row, **extra})


@pytest.mark.parametrize("line,msg", [
    ('{"id": "a", "path": "a.wav", "num_samples": 1' + "0" * 400 + ', "sample_rate": 16000, "speaker": "s"}',
     "an integer of 401 digits"),
    (_row(num_samples=2**41), r"'num_samples' must be a positive integer \(at most 1099511627776\)"),
    (_row(sample_rate=10**9), r"'sample_rate' must be a positive integer \(at most 10000000\)"),
    (_row()[:-1] + ', "labels": {"x": ' + "[" * 100_000 + "]" * 100_000 + "}}", "nested too deeply"),
    (_row()[:-1] + ', "labels": {"x": ' + "[" * 200 + "]" * 200 + "}}", "label 'labels' is nested deeper than 64"),
])
def test_manifest_rows_with_huge_numbers_or_deep_nesting_are_one_line_errors(tmp_path, line, msg):
    p = tmp_path / "m.jsonl"
    p.write_text(line + "\n")
    with pytest.raises(ConfigError, match=r"m\.jsonl:1: .*" + msg):
        read_manifest(p)
