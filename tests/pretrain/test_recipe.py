"""recipes/pretrain_*.sh end to end on the bundled corpus (a few steps; slow: each run starts Python + torch)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import audiorep

ROOT = Path(__file__).resolve().parents[2]
# recipes call the `audiorep` console script: the one installed beside this interpreter
ENV = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def _bundled_corpus_present() -> bool:
    from audiorep.data import list_corpora

    return "synth" in list_corpora()


@pytest.mark.slow
@pytest.mark.parametrize("recipe", ["pretrain_aalbert.sh", "pretrain_tera.sh"])
def test_recipe_runs_and_prints_the_final_model_last(recipe, tmp_path):
    if not _bundled_corpus_present():
        pytest.skip("bundled corpus not generated (recipes/make_synth_corpus.sh)")
    out = tmp_path / "run"
    proc = subprocess.run(["bash", str(ROOT / "recipes" / recipe), "synth", str(out), "train.max_steps=3",
                           "train.ckpt_every=2", "data.num_workers=0"], capture_output=True, text=True,
                          timeout=600, env=ENV)
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == str(out / "final")
    assert audiorep.load(last).num_layers == 3
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-00000002.pt", "step-00000003.pt"]
    assert (out / "metrics.csv").is_file() and "pretrain" in proc.stderr  # the progress bar went to stderr
    bad = subprocess.run(["bash", str(ROOT / "recipes" / recipe), "synth", str(out), "optim.lr=oops"],
                         capture_output=True, text=True, timeout=300, env=ENV)
    assert bad.returncode == 2 and "optim.lr: expected float" in bad.stderr


def test_budget_flag_picks_the_longer_config_or_says_which_exist(tmp_path):
    """``--budget 60m`` selects ``<small>-60m.yaml``; an unknown budget is one line naming what exists."""
    ok = subprocess.run(["bash", str(ROOT / "recipes" / "pretrain_aalbert.sh"), "synth", str(tmp_path / "r"),
                         "--budget", "60m", "--print-config"], capture_output=True, text=True, timeout=300, env=ENV)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "name: aalbert-small-60m" in ok.stdout and "distance_bias: true" in ok.stdout
    bad = subprocess.run(["bash", str(ROOT / "recipes" / "pretrain_tera.sh"), "--budget", "5m"],
                         capture_output=True, text=True, timeout=60, env=ENV)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith("--budget 5m: no configuration")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_a_default_run_is_reachable_under_the_stable_name(tmp_path):
    """The README's ``exp/aalbert-small/final``: a default-OUT run links exp/<config name> to its dated folder."""
    env = {**ENV, "EXP": str(tmp_path)}
    proc = subprocess.run(["bash", str(ROOT / "recipes" / "pretrain_aalbert.sh"), "synth", "train.max_steps=2",
                           "train.progress=false", "data.eval_split=null"], capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    stable = tmp_path / "aalbert-small"
    assert stable.is_symlink() and (stable / "final" / "config.json").is_file()
    assert Path(proc.stdout.strip().splitlines()[-1]).resolve() == (stable / "final").resolve()
