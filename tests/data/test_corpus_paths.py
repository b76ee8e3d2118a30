"""A manifest's folder is its boundary: a symbolic link inside it that leads outside is refused like a
climbing path, and ``data info`` counts the corpus the manifests list, not the whole folder tree."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import soundfile as sf

from audiorep.data import get_corpus, read_manifest
from audiorep.errors import ConfigError


def _corpus(root, outside=None):
    """A one-utterance corpus in ``root``; with ``outside``, its audio is a symlink to a file there."""
    (root / "wav").mkdir(parents=True)
    wav = root / "wav" / "a.wav"
    if outside is not None:
        outside.mkdir(parents=True, exist_ok=True)
        sf.write(outside / "secret.wav", np.zeros(1600, np.float32), 16000)
        wav.symlink_to(outside / "secret.wav")
    else:
        sf.write(wav, np.zeros(1600, np.float32), 16000)
    row = {"id": "a", "path": "wav/a.wav", "num_samples": 1600, "sample_rate": 16000, "speaker": "s"}
    (root / "train.jsonl").write_text(json.dumps(row) + "\n")
    return root / "train.jsonl"


def test_symlink_leading_outside_the_manifest_folder_is_refused(tmp_path):
    manifest = _corpus(tmp_path / "corpus", outside=tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match=r"train\.jsonl:1: path 'wav/a\.wav' leads through a symbolic link to "
                                          r".*elsewhere/secret\.wav, outside the manifest's folder"):
        read_manifest(manifest)
    assert read_manifest(manifest, allow_outside=True)[0].id == "a"


def test_symlink_staying_inside_the_folder_is_fine(tmp_path):
    root = tmp_path / "corpus"
    manifest = _corpus(root)
    (root / "wav" / "b.wav").symlink_to(root / "wav" / "a.wav")
    row = {"id": "b", "path": "wav/b.wav", "num_samples": 1600, "sample_rate": 16000, "speaker": "s"}
    with open(manifest, "a") as f:
        f.write(json.dumps(row) + "\n")
    assert [u.id for u in read_manifest(manifest)] == ["a", "b"]


def test_data_info_ignores_what_else_the_folder_holds(tmp_path, monkeypatch):
    root = tmp_path / "corpus"
    _corpus(root)
    (root / "junk" / "deep").mkdir(parents=True)
    (root / "junk" / "deep" / "dangling").symlink_to(tmp_path / "gone")
    info = get_corpus(root).info()
    assert info["utterances"] == 1
    expected = (os.path.getsize(root / "wav" / "a.wav") + os.path.getsize(root / "train.jsonl")) / 1e6
    assert info["size_mb"] == round(expected, 2)

    def no_walk(*a, **k):
        raise AssertionError("data info walked the folder tree")

    monkeypatch.setattr(os, "walk", no_walk)
    get_corpus(root).info()
