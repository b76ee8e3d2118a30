"""Bad data is named in one line: manifests, audio files, MMSA pickles, files read in loader workers."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import soundfile as sf
import torch
from torch.utils.data import DataLoader

import audiorep
from audiorep.cli import main
from audiorep.data import AudioDataset, Utterance, collate_waveforms, read_manifest, write_manifest
from audiorep.data.corpus import SYNTH_ROOT
from audiorep.data.mmsa import read_mmsa_pickle
from audiorep.errors import AudioError, ConfigError
from audiorep.features import FeatureExtractor


def _row(**kw):
    row = {"id": "u0", "path": "u0.wav", "num_samples": 1600, "sample_rate": 16000, "speaker": "s"}
    row.update(kw)
    return json.dumps(row, ensure_ascii=False)


@pytest.fixture
def corpus(tmp_path):
    """Folder with two 0.1 s WAVs and a manifest of them."""
    root = tmp_path / "corpus"
    root.mkdir()
    for i in range(2):
        sf.write(root / f"u{i}.wav", (0.1 * np.random.default_rng(i).standard_normal(1600)).astype(np.float32), 16000)
    (root / "train.jsonl").write_text(_row() + "\n" + _row(id="u1", path="u1.wav") + "\n")
    return root


def _one_line(capsys) -> str:
    """The one line of stderr that is not a progress bar."""
    err = capsys.readouterr().err
    lines = [l for l in err.split("\n") if l.strip() and "\r" not in l]
    assert len(lines) == 1, err
    return lines[0]


# ---------------------------------------------------------------- manifests

def test_a_latin1_manifest_is_a_one_line_error(corpus, capsys):
    (corpus / "train.jsonl").write_bytes(_row(speaker="Jos\u00e9").encode("latin-1") + b"\n")
    with pytest.raises(ConfigError, match=r"train.jsonl:1: not UTF-8 text \(byte 0xe9 at column \d+\); save the"):
        read_manifest(corpus / "train.jsonl")
    assert main(["data", "info", str(corpus)]) == 2
    assert "not UTF-8 text" in _one_line(capsys)


@pytest.mark.parametrize("path, how", [("../../etc/passwd", "climbs out of it"), ("/etc/passwd", "is absolute")])
def test_paths_outside_the_manifest_folder_need_an_opt_in(corpus, path, how):
    manifest = corpus / "train.jsonl"
    manifest.write_text(_row(path=path) + "\n")
    with pytest.raises(ConfigError, match=f"points outside the manifest's folder .* \\({how}\\); .*allow_outside_paths"):
        read_manifest(manifest)
    assert read_manifest(manifest, allow_outside=True)[0].path.endswith("/etc/passwd")
    manifest.write_text("# audiorep: allow_outside_paths\n" + _row(path=path) + "\n")
    assert read_manifest(manifest)[0].path.endswith("/etc/passwd")


def test_write_manifest_marks_the_paths_it_puts_outside(tmp_path, corpus):
    utts = read_manifest(corpus / "train.jsonl")
    out = write_manifest(utts, tmp_path / "elsewhere" / "list.jsonl")
    assert out.read_text().splitlines()[0] == "# audiorep: allow_outside_paths"
    assert [u.path for u in read_manifest(out)] == [u.path for u in utts]
    inside = write_manifest(utts, corpus / "again.jsonl")
    assert "allow_outside" not in inside.read_text()


@pytest.mark.parametrize("labels", ['{"sentiment": NaN}', '{"sentiment": -Infinity}', '{"a": [1, Infinity]}'])
def test_non_finite_labels_are_refused(corpus, labels):
    (corpus / "train.jsonl").write_text(_row()[:-1] + f', "labels": {labels}}}\n')
    with pytest.raises(ConfigError, match=r"train.jsonl:1: not valid JSON \(-?(NaN|Infinity) is not a number"):
        read_manifest(corpus / "train.jsonl")
    with pytest.raises(ConfigError, match="NaN or infinite label"):
        write_manifest([Utterance("a", "a.wav", 1, 16000, "s", labels={"sentiment": float("nan")})],
                       corpus / "w.jsonl")


def test_a_sample_rate_contradicting_the_file_is_named(corpus):
    (corpus / "train.jsonl").write_text(_row(sample_rate=8000, num_samples=800) + "\n")
    ds = AudioDataset(corpus / "train.jsonl", sample_rate=16000)
    with pytest.raises(AudioError, match="u0.wav: the manifest says 8000 Hz, the file is sampled at 16000 Hz"):
        ds[0]


# ---------------------------------------------------------------- audio files

def test_a_truncated_wav_is_refused(tmp_path):
    sf.write(tmp_path / "full.wav", np.zeros(16000, np.float32), 16000, subtype="PCM_16")
    data = (tmp_path / "full.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * 7989])
    with pytest.raises(AudioError, match=r"cut.wav: truncated: its WAV header declares 16000 frames but the file "
                                         r"holds 7989"):
        audiorep.read_audio(tmp_path / "cut.wav")
    assert audiorep.read_audio(tmp_path / "full.wav")[0].numel() == 16000


@pytest.mark.parametrize("keep", [0.2, 0.5])
def test_a_truncated_ogg_is_named_truncated(tmp_path, keep):
    src = sorted((SYNTH_ROOT / "audio").glob("*.ogg"))[0]
    data = src.read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: int(len(data) * keep)])  # 0.2: no audio page left (it read as "holds no samples")
    with pytest.raises(AudioError, match="cut.ogg: truncated Ogg stream"):
        audiorep.read_audio(cut)
    assert audiorep.read_audio(src)[0].numel() > 0


def test_a_folder_given_as_audio_is_called_a_folder(tmp_path, capsys):
    with pytest.raises(AudioError, match="a folder, not an audio file"):
        audiorep.read_audio(tmp_path)
    from audiorep.models import MockingjayConfig, MockingjayModel

    small = MockingjayConfig(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)
    folder = MockingjayModel(small).save_pretrained(tmp_path / "m")
    assert main(["extract", str(folder), str(tmp_path), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "a folder, not an audio file" in _one_line(capsys)


def test_a_huge_finite_sample_does_not_turn_an_utterance_into_silence():
    fe = FeatureExtractor()
    wav = torch.randn(1, 16000) * 0.1
    wav[0, 8000] = 3e38  # finite in float32; its square is not
    feats, _ = fe(wav, torch.tensor([16000]))
    assert feats.isfinite().all() and feats.abs().amax() > 1
    ref = wav.clone().double()
    ref = ref / ref.square().mean().sqrt() * 10 ** (-25 / 20)  # the level normalisation in float64
    expected, _ = fe(ref.float(), torch.tensor([16000]))
    assert torch.allclose(feats, expected, atol=1e-3)


def test_overflowing_features_without_level_normalisation_are_an_error():
    fe = FeatureExtractor(audiorep.FeatureConfig(target_db=None))
    wav = torch.randn(2, 4000) * 0.1
    wav[1, 100] = 3e38
    with pytest.raises(AudioError, match=r"utterance\(s\) \[1\]: features overflow"):
        fe(wav, torch.tensor([4000, 4000]))


# ---------------------------------------------------------------- loader workers

def test_a_bad_file_in_a_worker_is_one_line(corpus, capsys):
    (corpus / "u1.wav").write_bytes(b"RIFF garbage")
    loader = DataLoader(AudioDataset(corpus / "train.jsonl"), batch_size=1, collate_fn=collate_waveforms,
                        num_workers=1)
    with pytest.raises(AudioError) as err:
        list(loader)
    assert str(err.value).startswith(f"{corpus / 'u1.wav'}: cannot read audio")
    assert "\n" not in str(err.value) and "Traceback" not in str(err.value)
    (corpus / "empty.yaml").write_text("{}\n")
    code = main(["pretrain", "--config", str(corpus / "empty.yaml"), "--data", str(corpus / "train.jsonl"),
                 "--out", str(corpus / "run"), "model.hidden_size=16", "model.num_heads=2",
                 "model.intermediate_size=32", "model.num_layers=1", "data.num_workers=2", "train.progress=false",
                 "train.max_steps=2", "data.batch_size=1"])
    line = _one_line(capsys)
    assert code == 2 and line.startswith(f"audiorep pretrain: error: {corpus / 'u1.wav'}: cannot read audio")


# ---------------------------------------------------------------- MMSA pickles

def _split(n=4, la=6, lv=5, L=7):
    rng = np.random.default_rng(0)
    return {"audio": rng.normal(size=(n, la, 3)).astype(np.float32),
            "vision": rng.normal(size=(n, lv, 2)).astype(np.float32),
            "text": rng.normal(size=(n, L, 8)).astype(np.float32),
            "text_bert": np.ones((n, 3, L), dtype=np.int64),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "id": [f"v{i}$_$0" for i in range(n)], "raw_text": ["w"] * n,
            "audio_lengths": [la] * n, "vision_lengths": [lv] * n}


@pytest.mark.parametrize("key, value, message", [
    ("audio", [np.zeros((6, 3)), np.zeros((4, 3)), np.zeros((6, 3)), np.zeros((6, 3))], "not a regular array|object"),
    ("text_bert", "ids", "'text_bert'.*expected a numeric array, got a string array"),
    ("regression_labels", np.array(["1.0", "2", "0", "1"]), "'regression_labels'.*got a string array"),
    ("audio_lengths", ["6", "6", "6", "6"], "'audio_lengths'.*got a string array"),
    ("id", 7, "'id'.*expected a list of 4 entries, got int"),
    ("regression_labels", np.zeros(0, np.float32), r"'regression_labels'.*empty \(shape \(0,\)\)"),
    ("audio", np.zeros((4, 0, 3), np.float32), r"'audio'.*empty \(shape \(4, 0, 3\)\)"),
])
def test_malformed_mmsa_pickles_are_one_line_errors(tmp_path, key, value, message, capsys):
    split = _split()
    split[key] = value
    path = tmp_path / "aligned_50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": split, "valid": _split(), "test": _split()}, f, protocol=2)
    with pytest.raises(ConfigError, match=message) as err:
        read_mmsa_pickle(path)
    assert str(err.value).startswith(f"{path}['train']") and "\n" not in str(err.value)


def test_a_protocol_2_mmsa_pickle_with_numpy_arrays_reads(tmp_path):
    path = tmp_path / "unaligned_50.pkl"
    with open(path, "wb") as f:
        pickle.dump({"train": _split(), "valid": _split(), "test": _split()}, f, protocol=2)
    assert len(read_mmsa_pickle(path)["train"]) == 4
