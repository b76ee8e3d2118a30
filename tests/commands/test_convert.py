"""``audiorep convert`` never empties a folder it did not write, and says so in one line."""

from __future__ import annotations

import json

import pytest
import torch

import audiorep
from audiorep.cli import main
from audiorep.weights.s3prl import export_s3prl_checkpoint
from audiorep.models import MockingjayConfig, MockingjayModel


@pytest.fixture
def ckpt(tmp_path):
    m = MockingjayModel(MockingjayConfig(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=1)).eval()
    export_s3prl_checkpoint(m, tmp_path / "states-1.ckpt")
    return tmp_path / "states-1.ckpt"


def _err(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err.strip()


def test_the_current_folder_with_user_files_is_left_alone(tmp_path, ckpt, capsys, monkeypatch):
    v = tmp_path / "v"
    v.mkdir()
    (v / "notes").write_text("mine")
    (v / "states-1.ckpt").write_bytes(ckpt.read_bytes())
    monkeypatch.chdir(v)
    for extra in ([], ["--overwrite"]):
        assert main(["convert", "states-1.ckpt", ".", *extra]) == 2
        assert "not empty and not an audiorep model folder" in _err(capsys)
    assert sorted(p.name for p in v.iterdir()) == ["notes", "states-1.ckpt"]
    assert (v / "notes").read_text() == "mine"


def test_an_existing_file_is_refused(tmp_path, ckpt, capsys):
    f = tmp_path / "model.bin"
    f.write_text("keep")
    assert main(["convert", str(ckpt), str(f)]) == 2
    assert f"{f}: exists and is not a folder" in _err(capsys)
    assert f.read_text() == "keep"


def test_an_empty_folder_and_the_current_folder_are_written_into(tmp_path, ckpt, monkeypatch):
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.chdir(empty)
    assert main(["convert", str(ckpt), "."]) == 0
    assert sorted(p.name for p in empty.iterdir() if not p.name.startswith(".")) == ["README.md", "config.json", "model.safetensors"]
    assert audiorep.load(empty).num_layers == 1


def test_an_audiorep_folder_is_replaced_only_with_overwrite(tmp_path, ckpt, capsys):
    out = tmp_path / "model"
    assert main(["convert", str(ckpt), str(out)]) == 0
    capsys.readouterr()
    (out / "README.md").write_text("my notes about this model")
    before = (out / "model.safetensors").read_bytes()
    assert main(["convert", str(ckpt), str(out)]) == 2
    assert "already holds an audiorep model; pass --overwrite" in _err(capsys)
    m2 = MockingjayModel(MockingjayConfig(hidden_size=16, num_heads=2, intermediate_size=32, num_layers=2))
    export_s3prl_checkpoint(m2, tmp_path / "states-2.ckpt")
    assert main(["convert", str(tmp_path / "states-2.ckpt"), str(out), "--overwrite"]) == 0
    assert (out / "README.md").read_text() == "my notes about this model"  # not audiorep's: kept
    assert (out / "model.safetensors").read_bytes() != before
    assert json.loads((out / "config.json").read_text())["model"]["num_layers"] == 2
    wav = [torch.randn(1600)]
    with torch.no_grad():
        assert torch.allclose(audiorep.load(out)(wav).last_hidden_state, m2.eval()(wav).last_hidden_state, atol=1e-6)


def test_a_refusal_comes_before_reading_the_checkpoint(tmp_path, capsys):
    f = tmp_path / "x"
    f.write_text("")
    assert main(["convert", str(tmp_path / "missing.ckpt"), str(f)]) == 2
    assert "exists and is not a folder" in _err(capsys)
