"""``audiorep extract`` checks every argument before it loads a model or reads a file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.cli import main


@pytest.fixture
def setup(tmp_path, monkeypatch):
    """A model folder, one audio file, and audiorep.load made to fail loudly if a check comes too late."""
    from audiorep.models import MockingjayConfig, MockingjayModel

    small = MockingjayConfig(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)
    folder = MockingjayModel(small).save_pretrained(tmp_path / "m")
    wav = tmp_path / "a.wav"
    sf.write(wav, (0.1 * np.random.default_rng(0).standard_normal(1600)).astype(np.float32), 16000)
    return folder, wav


def _refuse_loading(monkeypatch):
    import audiorep.commands.extract as extract  # noqa: F401 - the command imports load from audiorep

    def no_load(*a, **k):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(audiorep, "load", no_load)


def _err(capsys) -> str:
    err = capsys.readouterr().err
    lines = [l for l in err.split("\n") if l.strip() and "\r" not in l]
    assert len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize("device, message", [
    ("banana", "--device 'banana': not a device name (cpu, cuda, cuda:N or mps)"),
    ("cuda", "--device cuda: CUDA is not available on this machine; use --device cpu"),
    ("cuda:99", "--device cuda:99: "),
])
def test_bad_devices_are_refused_before_loading(setup, tmp_path, monkeypatch, capsys, device, message):
    if device == "cuda" and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    folder, wav = setup
    _refuse_loading(monkeypatch)
    assert main(["extract", str(folder), str(wav), "--out", str(tmp_path / "o.safetensors"), "--device", device]) == 2
    assert message in _err(capsys)


def test_bad_out_paths_are_refused_before_loading(setup, tmp_path, monkeypatch, capsys):
    folder, wav = setup
    _refuse_loading(monkeypatch)
    assert main(["extract", str(folder), str(wav), "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: a folder; give a file path" in _err(capsys)
    assert main(["extract", str(folder), str(wav), "--out", str(wav / "o.safetensors")]) == 2
    assert f"{wav} is not a folder" in _err(capsys)
    assert main(["extract", str(folder), str(tmp_path / "missing.wav"), "--out", str(tmp_path / "o.st")]) == 2
    assert "missing.wav: no such audio file" in _err(capsys)


def test_existing_outputs_are_replaced_only_when_ours_and_asked(setup, tmp_path, capsys):
    folder, wav = setup
    mine = tmp_path / "results.safetensors"
    mine.write_text("a user's own file")
    for extra in ([], ["--overwrite"]):
        assert main(["extract", str(folder), str(wav), "--out", str(mine), *extra]) == 2
        capsys.readouterr()
    assert mine.read_text() == "a user's own file"
    out = tmp_path / "feats.safetensors"
    assert main(["extract", str(folder), str(wav), "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["extract", str(folder), str(wav), "--out", str(out), "--layer", "0"]) == 2
    assert "already exists; pass --overwrite" in _err(capsys)
    assert main(["extract", str(folder), str(wav), "--out", str(out), "--layer", "0", "--overwrite"]) == 0


def test_data_prepare_does_not_replace_manifests_without_overwrite(tmp_path, capsys):
    out = tmp_path / "manifests"
    out.mkdir()
    (out / "train-clean-100.jsonl").write_text("# edited by hand\n")
    assert main(["data", "prepare", "librispeech", str(tmp_path / "nowhere"), str(out)]) == 2
    assert f"{out}: already holds train-clean-100.jsonl, which audiorep did not write" in _err(capsys)
    assert (out / "train-clean-100.jsonl").read_text() == "# edited by hand\n"
