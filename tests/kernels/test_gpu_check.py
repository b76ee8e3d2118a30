"""benchmarks/gpu_check.sh, the one-command GPU check, run end to end on CPU (--cpu-smoke): every step's code
path, the report it writes, and the tuned table kept out of the package."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STEPS = ("kernel_tests", "attention", "fused_ops", "pretrain_step", "extract", "long_utterance")


@pytest.mark.skipif(shutil.which("bash") is None or shutil.which("timeout") is None, reason="needs bash + timeout")
def test_gpu_check_cpu_smoke_runs_every_step_and_writes_the_report(tmp_path):
    tuned_before = (ROOT / "audiorep" / "kernels" / "tuned.json").read_bytes()
    env = {**os.environ, "PYTHON": sys.executable}
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke", "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=900, env=env)
    (report,) = tmp_path.glob("gpu-smoke-*.md")
    text = report.read_text()
    assert r.returncode == 0, text[-4000:]
    for name in STEPS:
        assert f"| {name} | ok |" in text or (name == "pretrain_step" and f"| {name} | skipped" in text), name
    assert "CPU smoke run" in text and "roofline_pct" in text
    entries = json.loads((tmp_path / "tuned.json").read_text())["entries"]
    assert {e.get("source") for e in entries} >= {"benchmarks/attention.py"} and all("best" in e for e in entries)
    assert (ROOT / "audiorep" / "kernels" / "tuned.json").read_bytes() == tuned_before  # package table untouched


def test_gpu_check_refuses_to_run_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--out", str(tmp_path)],
                       capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    assert r.returncode == 2 and "no CUDA device here" in r.stderr
    r = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--bogus"], capture_output=True, text=True)
    assert r.returncode == 2 and "unknown argument --bogus" in r.stderr
