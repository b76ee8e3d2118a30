"""What pretraining trains on: the LibriSpeech subsets asked for (a typo is an error, not every subset), and
data on which masking can alter something (else every loss is 0 and the run learns nothing)."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from audiorep.errors import ConfigError
from audiorep.pretrain.config import load_config
from audiorep.pretrain.run import resolve_utterances


def librispeech_tree(root, subsets=("train-clean-100", "test-clean"), samples=3200):
    for i, subset in enumerate(subsets):
        chapter = root / subset / str(10 + i) / "1"
        chapter.mkdir(parents=True)
        sf.write(chapter / f"{10 + i}-1-0000.flac", np.zeros(samples, np.float32) + 0.01, 16000)
        (chapter / f"{10 + i}-1.trans.txt").write_text(f"{10 + i}-1-0000 HELLO\n")
    return root


def test_librispeech_subset_typo_is_an_error_naming_what_was_found(tmp_path):
    root = librispeech_tree(tmp_path / "LibriSpeech")
    cfg = load_config(overrides=[f"data.train={root}", "data.librispeech_subsets=[train-clean-10O]"])
    with pytest.raises(ConfigError, match=r"'train-clean-10O' is no LibriSpeech subset \(found under .*: "
                                          r"test-clean, train-clean-100\)"):
        resolve_utterances(cfg, run_dir=tmp_path / "run")


def test_librispeech_subsets_asked_for_are_the_ones_used(tmp_path):
    root = librispeech_tree(tmp_path / "LibriSpeech")
    cfg = load_config(overrides=[f"data.train={root}"])  # the default train-* subsets: only one is present
    assert [u.speaker for u in resolve_utterances(cfg, run_dir=tmp_path / "run")] == ["10"]
    cfg = load_config(overrides=[f"data.train={root}", "data.librispeech_subsets=[dev-clean]"])
    with pytest.raises(ConfigError, match=r"none of dev-clean is under .* \(found: test-clean, train-clean-100\)"):
        resolve_utterances(cfg, run_dir=tmp_path / "run2")


def test_a_span_longer_than_any_crop_is_refused_when_the_config_is_read():
    with pytest.raises(ConfigError, match=r"masking\.span=100000 frames is longer than the longest crop, "
                                          r"data\.max_seconds=15 s \(1501 frames\)"):
        load_config(overrides=["masking.span=100000"])
    load_config(overrides=["masking.span=100000", "masking.freq_proportion=0.2"])  # bands still alter


def test_utterances_all_shorter_than_a_span_are_refused_before_training(tmp_path):
    root = librispeech_tree(tmp_path / "LibriSpeech", subsets=("train-clean-100",), samples=800)  # 6 frames
    cfg = load_config(overrides=[f"data.train={root}", "data.librispeech_subsets=[train-clean-100]"])
    with pytest.raises(ConfigError, match=r"masking\.span=7 frames is longer than the longest utterance of "
                                          r"data\.train=.* \(6 frames\)"):
        resolve_utterances(cfg, run_dir=tmp_path / "run")
