import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from safetensors.torch import load_file

import audiorep
from audiorep.cli import main
from audiorep.weights.s3prl import export_s3prl_checkpoint

CONFIGS = Path(__file__).resolve().parents[1] / "recipes" / "configs"


@pytest.fixture
def tiny_folder(tmp_path, tiny_model):
    m = tiny_model().eval()
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


def test_sentiment_train_is_the_one_route_to_the_fusion_heads(monkeypatch, capsys):
    """`audiorep sentiment train` trains a fusion head; `audiorep downstream` offers only the probe heads."""
    import audiorep.multimodal.fusion_run as fusion

    seen = []

    def fake_run(cfg):
        seen.append(cfg)
        return {"runs": [{"seed": s, "test": {"Corr": 0.5}} for s in cfg.seeds], "summary": {"Corr": (0.5, 0.1)}}
    monkeypatch.setattr(fusion, "run", fake_run)
    args = ["sentiment", "train", "--head", "dmd", "upstream=logmel", "epochs=3", "seeds=[4]", "head_args.d=16"]
    assert main(args) == 0
    cfg = seen[0]
    assert (cfg.head, cfg.upstream, cfg.epochs, cfg.seeds, cfg.head_args) == ("dmd", "logmel", 3, [4], {"d": 16})
    assert "Corr: 0.5000 ± 0.1000" in capsys.readouterr().out
    for head in ("selfmm", "teasel"):
        with pytest.raises(SystemExit):  # argparse: not a choice of `downstream --head`
            main(["downstream", "--task", "sentiment", "--head", head])
        assert "invalid choice" in capsys.readouterr().err


def test_every_config_command_prints_its_config(tmp_path, capsys):
    """`--print-config` on each command that reads a config: the resolved YAML, loadable again, exit 0."""
    import yaml

    from audiorep import config
    from audiorep.multimodal import FusionConfig, TeaselRunConfig
    from audiorep.pretrain.config import PretrainConfig
    from audiorep.probe.run import DownstreamConfig

    cases = [
        (["pretrain", "--config", str(CONFIGS / "pretrain/aalbert-small.yaml"), "train.max_steps=60",
          "--out", "D", "train.seed=1"], PretrainConfig, {"out_dir": "D"}),
        (["downstream", "--config", str(CONFIGS / "downstream/phone.yaml"), "epochs=3", "--upstream", "logmel"],
         DownstreamConfig, {"epochs": 3, "upstream": "logmel", "task": "phone"}),
        (["sentiment", "train", "--config", str(CONFIGS / "fusion/dmd.yaml"), "seeds=[0]", "--out", "F",
          "head_args.d=8"], FusionConfig, {"head": "dmd", "out_dir": "F", "seeds": [0]}),
        (["teasel", "finetune", "--config", str(CONFIGS / "teasel/finetune.yaml"), "epochs=2", "--out", "T2",
          "--text-model", "/m/roberta"], TeaselRunConfig, {"epochs": 2, "out_dir": "T2", "text_model": "/m/roberta"}),
        (["teasel", "pretrain", "small_lm.epochs=3"], TeaselRunConfig, {"small_lm": {**config.to_dict(
            TeaselRunConfig().small_lm), "epochs": 3}}),
    ]
    for argv, cls, want in cases:
        assert main(argv + ["--print-config"]) == 0, argv
        printed = yaml.safe_load(capsys.readouterr().out)
        assert {k: printed[k] for k in want} == want, argv
        assert config.to_dict(config.build(cls, printed, "")) == printed  # reads back to the same config
    pre = yaml.safe_load(main(cases[0][0] + ["--print-config"]) == 0 and capsys.readouterr().out)
    assert pre["train"]["max_steps"] == 60 and pre["train"]["seed"] == 1
    fus = yaml.safe_load(main(cases[2][0] + ["--print-config"]) == 0 and capsys.readouterr().out)
    assert fus["head_args"]["d"] == 8 and fus["head_args"]["heads"] == 4  # the file's other head settings stay
    # the probe table has no config file: it prints the grid's settings
    assert main(["downstream", "probe-table", "--models", "A=x", "--head", "speaker=mean-mlp", "--print-config"]) == 0
    grid = yaml.safe_load(capsys.readouterr().out)
    assert grid["models"] == {"A": "x"} and grid["heads"] == {"speaker": "mean-mlp"}


def test_config_errors_name_the_key_on_every_command(capsys):
    for argv, key in [(["pretrain", "--config", str(CONFIGS / "pretrain/aalbert-small.yaml"), "optim.lr=fast"],
                       "optim.lr: expected float"),
                      (["downstream", "--task", "phone", "patiense=3"], "unknown key 'patiense'"),
                      (["sentiment", "train", "--head", "dmd", "epochs=many"], "epochs: expected int"),
                      (["teasel", "finetune", "small_lm.layers=2"], "unknown key 'layers' in small_lm")]:
        assert main(argv + ["--print-config"]) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and key in err, (argv, err)


def test_no_set_flag_any_more(capsys):
    """One override syntax: `--set` is gone from every command."""
    for argv in (["downstream", "--set", "epochs=3"], ["sentiment", "train", "--set", "epochs=3"],
                 ["teasel", "lm", "--set", "epochs=3"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "--set" in capsys.readouterr().err


def test_sentiment_table_merge_and_reference(tmp_path, capsys):
    import json

    run = {"seed": 0, "test": {"MAE": 1.0, "Corr": 0.5}}
    for s in (0, 1):
        d = tmp_path / f"s{s}"
        d.mkdir()
        (d / "dmd.json").write_text(json.dumps({"head": "dmd", "runs": [{**run, "seed": s}], "summary": {}}))
    assert main(["sentiment", "merge", str(tmp_path / "all"), str(tmp_path / "s0/dmd.json"),
                 str(tmp_path / "s1/dmd.json")]) == 0
    assert "dmd: 2 run(s)" in capsys.readouterr().out
    assert main(["sentiment", "table", str(tmp_path / "all")]) == 0
    assert "| dmd | 2 | 1.000 ± 0.000 | 0.500 ± 0.000" in capsys.readouterr().out
    assert main(["sentiment", "reference", "synth"]) == 0
    assert "| constant (train median) | - |" in capsys.readouterr().out


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


def test_probe_table_takes_config_and_overrides_like_every_run(tmp_path, capsys):
    """`downstream probe-table` reads --config, key=value and --print-config like the other commands."""
    import yaml

    assert main(["downstream", "probe-table", "epochs=3", "batch_size=8", "--models", "logmel", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 3 and printed["overrides"] == {"batch_size": 8}
    cfg = tmp_path / "cells.yaml"
    cfg.write_text("epochs: 2\nlr: 0.005\n")
    assert main(["downstream", "probe-table", "--config", str(cfg), "--models", "logmel", "--print-config"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["epochs"] == 2 and printed["overrides"] == {"lr": 0.005}
    assert main(["downstream", "probe-table", "task=speaker", "--models", "logmel"]) == 2
    assert "set per cell by the grid (--tasks)" in capsys.readouterr().err
    assert main(["downstream", "probe-table", "lr=inf", "--models", "logmel"]) == 2
    assert "lr must be a finite number" in capsys.readouterr().err
