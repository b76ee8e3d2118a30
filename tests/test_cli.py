import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

import audiorep
from audiorep.cli import main
from audiorep.compat.s3prl import export_s3prl_checkpoint
from audiorep.models import MockingjayConfig, MockingjayModel


@pytest.fixture
def tiny_folder(tmp_path):
    m = MockingjayModel(MockingjayConfig(hidden_size=32, num_heads=2, intermediate_size=64, num_layers=2)).eval()
    return m, m.save_pretrained(tmp_path / "tiny")


def test_extract_all_layers_and_one_layer(tmp_path, tiny_folder, capsys):
    m, folder = tiny_folder
    paths = []
    for i, n in enumerate([16000, 12000]):
        p = tmp_path / f"u{i}.wav"
        sf.write(p, (np.random.randn(n) * 0.1).astype("float32"), 16000)
        paths.append(str(p))
    out = tmp_path / "feats.safetensors"
    assert main(["extract", str(folder), *paths, "--out", str(out)]) == 0
    feats = load_file(out)
    assert feats[paths[0]].shape == (3, 101, 32) and feats[paths[1]].shape == (3, 76, 32)
    wav, _ = audiorep.read_audio(paths[1])
    with torch.inference_mode():
        ref = m([wav]).hidden_states
    assert (feats[paths[1]][2] - ref[2][0]).abs().max() < 1e-5
    assert main(["extract", str(folder), paths[0], "--out", str(out), "--layer", "-1", "--overwrite"]) == 0
    assert load_file(out)[paths[0]].shape == (101, 32)
    assert main(["extract", str(folder), paths[0], "--out", str(out), "--layer", "7", "--overwrite"]) == 2
    assert "--layer 7" in capsys.readouterr().err


def test_extract_reports_bad_audio(tmp_path, tiny_folder, capsys):
    _, folder = tiny_folder
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"nope")
    assert main(["extract", str(folder), str(bad), "--out", str(tmp_path / "o.safetensors")]) == 2
    assert "bad.wav" in capsys.readouterr().err


def test_convert(tmp_path, tiny_folder):
    m, _ = tiny_folder
    export_s3prl_checkpoint(m, tmp_path / "states-5.ckpt")
    assert main(["convert", str(tmp_path / "states-5.ckpt"), str(tmp_path / "conv")]) == 0
    wav = [torch.randn(1600)]
    with torch.inference_mode():
        assert (audiorep.load(tmp_path / "conv")(wav).last_hidden_state - m(wav).last_hidden_state).abs().max() < 1e-6


def test_console_script_help():
    r = subprocess.run([sys.executable, "-m", "audiorep.cli", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "extract" in r.stdout and "convert" in r.stdout


def test_downstream_fusion_heads_route_to_the_fusion_trainer(monkeypatch, capsys):
    """`audiorep downstream --task sentiment --head dmd` trains the fusion head with only the given flags."""
    import audiorep.downstream.fusion as fusion

    seen = []

    def fake_run(cfg):
        seen.append(cfg)
        return {"runs": [{"seed": s} for s in cfg.seeds], "summary": {"Corr": (0.5, 0.1)}}
    monkeypatch.setattr(fusion, "run", fake_run)
    args = ["downstream", "--task", "sentiment", "--head", "dmd", "--upstream", "logmel", "--mode", "last",
            "--epochs", "3", "--device", "cpu", "--set", "seeds=[4]", "--set", "head_args.d=16"]
    assert main(args) == 0
    cfg = seen[0]
    assert (cfg.head, cfg.upstream, cfg.mode, cfg.epochs, cfg.seeds, cfg.head_args) == \
        ("dmd", "logmel", "last", 3, [4], {"d": 16})
    assert cfg.lr == fusion.FusionConfig.lr  # the probe's lr default does not leak into the fusion head
    out = capsys.readouterr().out
    assert "test_Corr: 0.5000 ± 0.1000" in out and "seeds: 4" in out
    assert main(["downstream", "--task", "phone", "--head", "selfmm"]) == 2
    assert "--head selfmm is a sentiment head" in capsys.readouterr().err
    assert main(["downstream", "--task", "sentiment", "--head", "deepmlf", "--mode", "finetune"]) == 2
    assert "keeps the upstream frozen" in capsys.readouterr().err


def test_downstream_teasel_head_builds_the_teasel_run(monkeypatch, capsys, tmp_path):
    """`--head teasel`: the upstream becomes TEASEL's front end, last mode picks the last hidden state."""
    import audiorep.teasel as teasel

    seen = []

    def fake_finetune(cfg):
        seen.append(cfg)
        return {"test": {"Corr": 0.25}, "best_epoch": 3}
    monkeypatch.setattr(teasel, "run_finetune", fake_finetune)
    assert main(["downstream", "--task", "sentiment", "--head", "teasel", "--upstream", "exp/x/final",
                 "--mode", "last", "--epochs", "2", "--device", "cpu", "--out", str(tmp_path / "t")]) == 0
    cfg = seen[0]
    assert (cfg.front_end, cfg.upstream, cfg.upstream_layer, cfg.epochs, cfg.output_dir) == \
        ("upstream", "exp/x/final", -1, 2, str(tmp_path / "t"))
    assert "test_Corr: 0.2500" in capsys.readouterr().out
    assert main(["downstream", "--task", "sentiment", "--head", "teasel", "--mode", "finetune"]) == 2
    assert "keeps the upstream frozen" in capsys.readouterr().err


def test_unexpected_errors_are_one_line_with_exit_1(monkeypatch, capsys):
    import audiorep.commands.convert as convert

    def boom(args):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(convert, "run", boom)
    monkeypatch.delenv("AUDIOREP_DEBUG", raising=False)
    assert main(["convert", "a.ckpt", "out"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "audiorep convert: internal error: RuntimeError: disk on fire second line" in err
    assert "Traceback" not in err
    assert main(["--debug", "convert", "a.ckpt", "out"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("AUDIOREP_DEBUG", "1")
    assert main(["convert", "a.ckpt", "out"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_usage_errors_keep_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["extract"])
    assert exc.value.code == 2


def test_written_files_follow_the_umask(tmp_path):
    import os

    from audiorep.fileio import atomic_directory, atomic_write_text

    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        with atomic_directory(tmp_path / "d") as staging:
            (staging / "f").write_text("y")
        assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o644
        assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
        assert (tmp_path / "b.txt").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(old)
