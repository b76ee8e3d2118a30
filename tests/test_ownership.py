"""Whose folder is this: audiorep replaces or deletes only what its marker lists, for every command that writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.cli import main
from audiorep.weights.s3prl import export_s3prl_checkpoint
from audiorep.data import Utterance, write_manifest
from audiorep.errors import ConfigError
from audiorep.models import MockingjayConfig, MockingjayModel
from audiorep.ownership import MARKER, check_output_dir, check_writable, claim, owned_names, remove_owned

TINY = dict(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


# ---- the rule itself ----

def test_listed_names_are_replaceable_and_others_are_refused(tmp_path):
    d = tmp_path / "d"
    claim(d, ["a.txt"])
    (d / "a.txt").write_text("ours")
    (d / "b.txt").write_text("user")
    check_writable(d, ["a.txt", "new.txt"], replace=True)
    with pytest.raises(ConfigError, match="pass --overwrite"):
        check_writable(d, ["a.txt"], replace=False)
    with pytest.raises(ConfigError, match="audiorep did not write it"):
        check_writable(d, ["b.txt"], replace=True)
    assert owned_names(d) == {"a.txt"}


def test_remove_owned_keeps_user_files_and_their_folders(tmp_path):
    d = tmp_path / "d"
    claim(d, ["a.txt", "sub"])
    (d / "a.txt").write_text("ours")
    claim(d / "sub", ["w.bin"])
    (d / "sub" / "w.bin").write_text("ours")
    (d / "sub" / "notes.txt").write_text("user")
    (d / "mine.txt").write_text("user")
    remove_owned(d)
    assert sorted(p.name for p in d.iterdir()) == [MARKER, "mine.txt", "sub"]
    assert sorted(p.name for p in (d / "sub").iterdir()) == [MARKER, "notes.txt"]


def test_a_foreign_or_unreadable_marker_owns_nothing(tmp_path):
    (tmp_path / MARKER).write_text(json.dumps({"files": ["config.json"]}))  # not our kind
    assert owned_names(tmp_path) == set()
    (tmp_path / MARKER).write_text("{cut sho")
    assert owned_names(tmp_path) == set()


@pytest.mark.parametrize("make", ["file/sub", "long", "file"])
def test_blocked_output_folders_are_one_line_errors(tmp_path, make):
    (tmp_path / "file").write_text("x")
    target = {"file/sub": tmp_path / "file" / "sub", "file": tmp_path / "file",
              "long": tmp_path / ("n" * 250) / ("m" * 260)}[make]
    with pytest.raises(ConfigError) as e:
        check_output_dir(target)
    assert "\n" not in str(e.value)


# ---- item 1: convert --overwrite into a transformers folder ----

@pytest.fixture
def ckpt(tmp_path):
    m = MockingjayModel(MockingjayConfig(**TINY)).eval()
    export_s3prl_checkpoint(m, tmp_path / "states-1.ckpt")
    return tmp_path / "states-1.ckpt"


def test_convert_overwrite_refuses_a_transformers_model_folder(tmp_path, ckpt, capsys):
    w2v = tmp_path / "w2v_copy"
    w2v.mkdir()
    (w2v / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "hidden_size": 32}))
    (w2v / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    before = {p.name: p.read_bytes() for p in w2v.iterdir()}
    assert main(["convert", str(ckpt), str(w2v), "--overwrite"]) == 2
    assert "not an audiorep model folder" in _one_line(capsys)
    assert {p.name: p.read_bytes() for p in w2v.iterdir()} == before


def test_save_pretrained_refuses_to_replace_a_foreign_config(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    m = MockingjayModel(MockingjayConfig(**TINY))
    with pytest.raises(ConfigError, match="audiorep did not write it"):
        m.save_pretrained(tmp_path)
    assert (tmp_path / "config.json").read_text() == "{}"
    m.save_pretrained(tmp_path / "ok")
    m.save_pretrained(tmp_path / "ok")  # its own files: replaced
    assert audiorep.load(tmp_path / "ok").num_layers == 1


# ---- item 29: outputs blocked by a file fail before any work ----

def test_convert_into_file_slash_sub_is_one_line(tmp_path, ckpt, capsys):
    (tmp_path / "file").write_text("x")
    assert main(["convert", str(ckpt), str(tmp_path / "file" / "sub")]) == 2
    assert "is not a folder" in _one_line(capsys)


# ---- every command that writes: user files of audiorep's names survive, --overwrite or not ----

def _corpus(root: Path) -> Path:
    """3 speakers x 4 short noisy tones, train/dev/test manifests with speaker labels."""
    rng = np.random.default_rng(0)
    rows: dict[str, list[Utterance]] = {"train": [], "dev": [], "test": []}
    (root / "wav").mkdir(parents=True)
    for s in range(3):
        for i in range(4):
            n = 4000 + 800 * i
            t = np.arange(n) / 16000
            w = 0.3 * np.sin(2 * np.pi * (200 + 300 * s) * t) + 0.01 * rng.standard_normal(n)
            path = root / "wav" / f"s{s}-{i}.wav"
            sf.write(path, w.astype(np.float32), 16000)
            split = "dev" if i == 0 else "test" if i == 1 else "train"
            rows[split].append(Utterance(f"s{s}-{i}", str(path), n, 16000, f"spk{s}", "", {}))
    for split, us in rows.items():
        write_manifest(us, root / f"{split}.jsonl")
    return root


def _librispeech(root: Path) -> Path:
    chap = root / "train-clean-100" / "19" / "198"
    chap.mkdir(parents=True)
    sf.write(chap / "19-198-0000.flac", np.zeros(1600, dtype=np.float32), 16000)
    (chap / "19-198.trans.txt").write_text("19-198-0000 HELLO\n")
    (root / "converted_aligned_phones.txt").write_text("19-198-0000 1 1 1\n")
    return root


TINY_PRETRAIN = {"model": {"hidden_size": 16, "num_heads": 2, "intermediate_size": 32, "num_layers": 1},
                 "train": {"max_steps": 2, "log_every": 1, "ckpt_every": 1, "progress": False},
                 "data": {"batch_size": 4, "num_workers": 0, "eval_split": None}}

WRITERS = {  # command -> (names it writes in its output folder, argv given (tmp, out))
    "pretrain": (["config.yaml", "metrics.csv", "loss.png", "eval.json"],
                 lambda tmp, out: ["pretrain", "--config", str(tmp / "p.yaml"), "--data", str(tmp / "corpus" / "train.jsonl"),
                                   "--out", str(out)]),
    "downstream": (["config.json", "metrics.csv", "results.json", "best.pt"],
                   lambda tmp, out: ["downstream", "--task", "speaker", "--data", str(tmp / "corpus"), "--epochs", "1",
                                     "--out", str(out), "progress=false"]),
    "convert": (["config.json", "model.safetensors"], lambda tmp, out: ["convert", str(tmp / "states-1.ckpt"), str(out)]),
    "extract": (["f.safetensors"], lambda tmp, out: ["extract", str(tmp / "model"), str(tmp / "corpus" / "wav" / "s0-0.wav"),
                                                      "--out", str(out / "f.safetensors")]),
    "data prepare": (["train-clean-100.jsonl", "converted_aligned_phones.txt"],
                     lambda tmp, out: ["data", "prepare", "librispeech", str(tmp / "libri"), str(out)]),
}


@pytest.mark.parametrize("command", sorted(WRITERS) + ["save_pretrained"])
def test_no_command_replaces_or_deletes_a_user_file(tmp_path, command, capsys, ckpt):
    import yaml

    _corpus(tmp_path / "corpus")
    _librispeech(tmp_path / "libri")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(TINY_PRETRAIN))
    MockingjayModel(MockingjayConfig(**TINY)).save_pretrained(tmp_path / "model")
    out = tmp_path / "out"
    out.mkdir()
    names = WRITERS[command][0] if command in WRITERS else ["config.json", "model.safetensors"]
    for n in names:
        (out / n).write_bytes(f"user's own {n}\n".encode())
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "README.txt").write_text("keep")
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    for extra in ([], ["--overwrite"]):
        if command == "save_pretrained":
            with pytest.raises(ConfigError):
                MockingjayModel(MockingjayConfig(**TINY)).save_pretrained(out)
        else:
            assert main(WRITERS[command][1](tmp_path, out) + extra) == 2
            _one_line(capsys)
        after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert {k: v for k, v in after.items() if k in before} == before, extra


@pytest.mark.parametrize("command", ["pretrain", "downstream"])
def test_run_folders_with_user_files_of_other_names_write_new_names_only(tmp_path, command, capsys):
    """``--out .`` in a project folder: the run writes its own new names and leaves the rest; a rerun with
    --overwrite replaces only what the first run wrote."""
    import yaml

    _corpus(tmp_path / "corpus")
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(TINY_PRETRAIN))
    out = tmp_path / "project"
    out.mkdir()
    (out / "notes.md").write_text("mine")
    (out / "checkpoints").mkdir()
    (out / "checkpoints" / "README.txt").write_text("keep")
    argv = WRITERS[command][1](tmp_path, out)
    assert main(argv) == 0
    assert main(argv + ["--overwrite"]) == 0
    assert (out / "notes.md").read_text() == "mine"
    assert (out / "checkpoints" / "README.txt").read_text() == "keep"
    assert "config.yaml" in owned_names(out) or "config.json" in owned_names(out)
