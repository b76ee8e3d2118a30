"""The GPU benchmarks' code paths, run on CPU with --cpu-smoke (Triton interpreter, tiny shapes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args],
                         capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.mark.slow
def test_attention_benchmark_cpu_smoke_writes_results_and_table(tmp_path):
    tuned = tmp_path / "tuned.json"
    stdout = _run("attention.py", "--cpu-smoke", "--lengths", "24", "--backends", "triton", "sdpa", "reference",
                  "--out", str(tmp_path), "--write-tuned", "--tuned-path", str(tuned))
    assert "triton_interpret=True" in stdout
    (result,) = tmp_path.glob("attention_*.json")
    payload = json.loads(result.read_text())
    assert payload["triton_within_2x"]["24"] is True
    assert {r["backend"] for r in payload["rows"]} == {"triton", "sdpa", "reference"}
    assert all("fwd_bwd_ms" in r for r in payload["rows"])
    table = json.loads(tuned.read_text())
    assert {e["mode"] for e in table["entries"]} == {"fwd", "fwd_bwd"}


@pytest.mark.slow
def test_e2e_benchmark_cpu_smoke(tmp_path):
    _run("e2e_gpu.py", "--cpu-smoke", "--models", "aalbert-base", "--backends", "triton", "--out", str(tmp_path))
    (result,) = tmp_path.glob("e2e_*.json")
    rows = json.loads(result.read_text())["rows"]
    assert [r["resolved"] for r in rows] == ["triton", "triton"] and all("error" not in r for r in rows)


@pytest.mark.slow
def test_fused_ops_benchmark_cpu_smoke(tmp_path):
    _run("fused_ops.py", "--cpu-smoke", "--cases", "amp", "--out", str(tmp_path))
    (result,) = tmp_path.glob("fused_ops_*.json")
    rows = json.loads(result.read_text())["rows"]
    assert {r["backend"] for r in rows} == {"torch", "triton"} and all("error" not in r for r in rows)


def test_benchmarks_exit_cleanly_without_cuda(monkeypatch, capsys):
    import importlib

    import torch

    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))
    for module in ("attention", "e2e_gpu", "fused_ops"):
        assert importlib.import_module(module).main([]) == 0
        assert "no CUDA device" in capsys.readouterr().out
