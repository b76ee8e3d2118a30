"""Run folders: --overwrite deletes only what audiorep wrote, --resume keeps what ran, outputs checked first."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import yaml

from audiorep.cli import main
from audiorep.errors import ConfigError
from audiorep.pretrain.config import load_config
from audiorep.pretrain.run import pretrain, resolve_utterances

TINY = ["model.hidden_size=16", "model.num_heads=2", "model.intermediate_size=32", "model.num_layers=1",
        "data.num_workers=0", "train.progress=false", "train.log_every=1", "data.batch_size=4",
        "data.eval_split=null"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    with open(root / "train.jsonl", "w") as f:
        for i in range(6):
            n = 3200 + 800 * i
            sf.write(root / f"u{i}.wav", (0.1 * rng.standard_normal(n)).astype(np.float32), 16000)
            f.write(json.dumps({"id": f"u{i}", "path": f"u{i}.wav", "num_samples": n, "sample_rate": 16000,
                                "speaker": "s0"}) + "\n")
    return root / "train.jsonl"


def _cfg(manifest, out, *extra):
    return load_config(None, TINY + [f"data.train={manifest}", f"out_dir={out}", *extra])


def test_overwrite_keeps_user_files_in_checkpoints(manifest, tmp_path):
    out = tmp_path / "r"
    pretrain(_cfg(manifest, out, "train.max_steps=2", "train.ckpt_every=1"))
    (out / "checkpoints" / "README.txt").write_text("keep")
    pretrain(_cfg(manifest, out, "train.max_steps=2", "train.ckpt_every=1"), overwrite=True)
    assert (out / "checkpoints" / "README.txt").read_text() == "keep"
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == ["step-00000001.pt", "step-00000002.pt"]


def test_resume_refuses_a_changed_optimiser_setting_and_records_allowed_changes(manifest, tmp_path):
    out = tmp_path / "r"
    pretrain(_cfg(manifest, out, "train.max_steps=3", "train.ckpt_every=1"), step_budget=2)
    with pytest.raises(ConfigError, match=r"changed settings: optim\.lr 0\.0002 -> 0\.5;") as e:
        pretrain(_cfg(manifest, out, "train.max_steps=3", "optim.lr=0.5"), resume=True)
    assert "\n" not in str(e.value)
    assert yaml.safe_load((out / "config.yaml").read_text())["optim"]["lr"] == 0.0002  # still what ran
    res = pretrain(_cfg(manifest, out, "train.max_steps=4", "train.ckpt_every=2"), resume=True)
    assert res.step == 4
    saved = yaml.safe_load((out / "config.yaml").read_text())["train"]
    assert saved["max_steps"] == 4 and saved["ckpt_every"] == 2  # config.yaml says what ran


def _libri(root: Path, speaker: str) -> Path:
    chap = root / "train-clean-100" / speaker / "1"
    chap.mkdir(parents=True)
    sf.write(chap / f"{speaker}-1-0000.flac", np.zeros(8000, dtype=np.float32), 16000)
    (chap / f"{speaker}-1.trans.txt").write_text(f"{speaker}-1-0000 HELLO\n")
    return root


def test_the_librispeech_scan_cache_follows_the_data(tmp_path):
    a, b = _libri(tmp_path / "libA", "11"), _libri(tmp_path / "libB", "22")
    out = tmp_path / "r"
    first = resolve_utterances(load_config(None, TINY + [f"data.train={a}", f"out_dir={out}"]), out)
    second = resolve_utterances(load_config(None, TINY + [f"data.train={b}", f"out_dir={out}"]), out)
    assert [u.id for u in first] == ["11-1-0000"] and [u.id for u in second] == ["22-1-0000"]


def test_a_blocked_final_folder_fails_before_training(manifest, tmp_path, capsys):
    out = tmp_path / "r"
    out.mkdir()
    (out / "final").write_text("a file where the model folder goes")
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "final" in err and "\n" not in err
    assert not (out / "checkpoints").exists() and not (out / "metrics.csv").exists()  # nothing trained


def test_a_run_folder_name_too_long_fails_in_one_line(manifest, tmp_path, capsys):
    out = tmp_path / ("x" * 250) / ("y" * 260)
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "allows" in err and "\n" not in err


def test_downstream_cache_dir_and_probe_table_out_blocked_by_a_file(tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert main(["downstream", "--task", "speaker", "--cache-dir", str(f), "--out", str(tmp_path / "r")]) == 2
    assert "--cache-dir" in capsys.readouterr().err
    assert main(["downstream", "probe-table", "--models", "a=logmel", "--out", str(f)]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a folder" in err and "\n" not in err


def test_the_summary_names_loss_png_only_when_it_was_written(manifest, tmp_path, capsys, monkeypatch):
    import audiorep.train.metrics as metrics

    monkeypatch.setattr(metrics, "pyplot", lambda: None)  # the README's install: no matplotlib
    out = tmp_path / "r"
    assert main(["pretrain", "--config", str(_yaml(tmp_path)), "--data", str(manifest), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "see metrics.csv)" in err and "loss.png" not in err and not (out / "loss.png").exists()


def _yaml(tmp_path: Path) -> Path:
    p = tmp_path / "p.yaml"
    p.write_text(yaml.safe_dump({"model": {"hidden_size": 16, "num_heads": 2, "intermediate_size": 32,
                                           "num_layers": 1},
                                 "train": {"max_steps": 2, "log_every": 1, "progress": False},
                                 "data": {"batch_size": 4, "num_workers": 0, "eval_split": None}}))
    return p
