"""End-to-end pretraining on a tiny manifest: resume == uninterrupted, exports load, CLI and DDP."""

from __future__ import annotations

import csv
import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

import audiorep
from audiorep.errors import ConfigError
from audiorep.pretrain.config import load_config
from audiorep.pretrain.run import pretrain

TINY = ["model.hidden_size=32", "model.num_heads=2", "model.intermediate_size=64", "model.num_layers=2",
        "data.num_workers=0", "train.progress=false", "train.log_every=1", "optim.lr=1e-3"]


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    """12 short tone+noise files (0.2-0.9 s) and their train.jsonl."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    with open(root / "train.jsonl", "w") as f:
        for i in range(12):
            n = int(16000 * rng.uniform(0.2, 0.9))
            t = np.arange(n) / 16000
            w = 0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.05 * rng.standard_normal(n)
            sf.write(root / f"u{i}.wav", w.astype(np.float32), 16000)
            f.write(json.dumps({"id": f"u{i}", "path": f"u{i}.wav", "num_samples": n, "sample_rate": 16000,
                                "speaker": f"s{i % 3}"}) + "\n")
    return root / "train.jsonl"


def _cfg(manifest, out, *extra):
    return load_config(None, TINY + [f"data.train={manifest}", f"out_dir={out}", *extra])


def _csv_losses(run_dir) -> dict[int, float]:
    with open(Path(run_dir) / "metrics.csv") as f:
        return {int(r["step"]): float(r["loss"]) for r in csv.DictReader(f)}


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(manifest, tmp_path):
    common = ["train.max_steps=5", "train.ckpt_every=2", "train.keep_last=2", "data.batch_size=4",
              "model.dropout=0.1", "masking.noise_proportion=0.5", "masking.freq_proportion=0.2"]
    full = pretrain(_cfg(manifest, tmp_path / "full", *common))
    part = pretrain(_cfg(manifest, tmp_path / "part", *common), step_budget=3)  # "killed" after step 3
    assert part.step == 3 and part.final_dir is None
    ckpts = sorted(p.name for p in (tmp_path / "part" / "checkpoints").glob("step-*"))
    assert ckpts == ["step-00000002.pt", "step-00000003.pt"]  # keep_last=2
    with pytest.raises(ConfigError, match="--resume"):
        pretrain(_cfg(manifest, tmp_path / "part", *common))  # never silently restarts over a run
    rest = pretrain(_cfg(manifest, tmp_path / "part", *common), resume=True)
    full_losses = [l.loss for l in full.logs]
    assert [l.loss for l in part.logs] + [l.loss for l in rest.logs] == full_losses  # bit-identical on CPU
    assert _csv_losses(tmp_path / "part") == _csv_losses(tmp_path / "full")
    assert sorted(p.name for p in (tmp_path / "full" / "checkpoints").glob("step-*")) == [
        "step-00000004.pt", "step-00000005.pt"]
    ckpt = torch.load(tmp_path / "full" / "checkpoints" / "step-00000005.pt", weights_only=True)
    assert {"model", "optimizer", "scheduler", "step", "rng", "loader"} <= set(ckpt)
    assert any(k.startswith("head.") for k in ckpt["model"])

    # the final folder loads as a plain upstream; the s3prl export gives the same hidden states
    m = audiorep.load(full.final_dir)
    s3 = audiorep.load(full.s3prl_checkpoint)
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        a, b = m(wav).hidden_states, s3(wav).hidden_states
    assert len(a) == 3 and all(torch.allclose(x, y, atol=1e-5) for x, y in zip(a, b))
    assert (tmp_path / "full" / "config.yaml").is_file()


def test_cli_overrides_are_type_checked(manifest, tmp_path, capsys):
    from audiorep.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: t\nmodel: {hidden_size: 32, num_heads: 2, intermediate_size: 64, num_layers: 1}\n"
                   "train: {max_steps: 2, progress: false}\ndata: {num_workers: 0, batch_size: 4}\n")
    assert main(["pretrain", "--config", str(cfg), "--data", str(manifest), "--out", str(tmp_path / "o"),
                 "optim.lr=fast"]) == 2
    err = capsys.readouterr().err
    assert "optim.lr" in err and "expected float" in err
    assert main(["pretrain", "--config", str(cfg), "--out", str(tmp_path / "o"), "train.max_step=3"]) == 2
    assert "unknown key 'max_step'" in capsys.readouterr().err
    assert main(["pretrain", "--config", str(cfg), "--data", str(manifest), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == str(tmp_path / "o" / "final")
    assert audiorep.load(out[-1]).num_layers == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_match_one_process_with_the_same_global_batch(manifest, tmp_path):
    """torchrun + gloo, 2 ranks x 1 micro-batch vs 1 rank x 2 accumulated micro-batches: same utterances
    per step (the sampler deals batch 2s to rank 0 and 2s+1 to rank 1), so the same losses."""
    common = ["train.max_steps=3", "train.ckpt_every=10", "data.batch_size=3", "model.dropout=0.0",
              "model.attn_dropout=0.0", "masking.freq_proportion=0.2"]
    cfg = tmp_path / "c.yaml"
    cfg.write_text("name: ddp\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes=1", "--nproc_per_node=2",
           f"--master_port={_free_port()}", "-m", "audiorep.cli", "pretrain", "--config", str(cfg),
           "--data", str(manifest), "--out", str(tmp_path / "two"), *TINY, *common]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == str(tmp_path / "two" / "final")  # printed once, by rank 0
    one = pretrain(_cfg(manifest, tmp_path / "one", *common, "train.grad_accum=2"))
    two = _csv_losses(tmp_path / "two")
    assert sorted(two) == [1, 2, 3]
    for s, l in enumerate(one.logs, start=1):
        assert abs(two[s] - l.loss) <= 1e-4 * abs(l.loss), (s, two[s], l.loss)
    a = audiorep.load(tmp_path / "two" / "final").state_dict()
    b = audiorep.load(one.final_dir).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_a_corpus_run_writes_the_held_out_check(manifest, tmp_path):
    import shutil

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for p in manifest.parent.glob("u*.wav"):
        shutil.copy(p, corpus / p.name)
    shutil.copy(manifest, corpus / "train.jsonl")
    shutil.copy(manifest, corpus / "dev.jsonl")  # same files: only the wiring is under test here
    res = pretrain(_cfg(corpus, tmp_path / "run", "train.max_steps=2", "data.batch_size=4", "data.eval_max_utts=5"))
    rep = json.loads((res.run_dir / "eval.json").read_text())
    assert rep["split"] == "dev" and rep["utterances"] == 5
    assert rep["hidden_elements"] > 0 and rep["model"] > 0 and rep["zero"] > 0 and "interpolation" in rep
    # a LibriSpeech-style root or a corpus without the split is skipped, not an error
    res2 = pretrain(_cfg(manifest, tmp_path / "run2", "train.max_steps=1", "data.batch_size=4"))
    assert res2.final_dir is not None and not (res2.run_dir / "eval.json").exists()


def test_final_model_card_lists_training_data_and_steps(manifest, tmp_path):
    res = pretrain(_cfg(manifest, tmp_path / "run", "train.max_steps=2", "data.batch_size=4",
                        "masking.freq_proportion=0.2"))
    card = (res.final_dir / "README.md").read_text()
    training = card[card.index("## Training"):].split("\n## ")[0]
    assert f"- data: {manifest} (split train)" in training
    assert "- utterances: 12" in training and "- steps: 2" in training
    assert "- batch size: 4 utterances per micro-batch x 1 accumulation x 1 process(es)" in training
    assert "L1 loss" in training and "frequency band of up to 20% of bins" in training and "noise" not in training
    assert "peak lr 0.001" in training
    assert re.search(r"^- wall time: \d+ s$", training, re.M)
