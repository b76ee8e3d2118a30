"""Reusable training pieces: typed configs + overrides, AdamW groups and schedule, checkpoints, RNG, logs."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from audiorep.errors import CheckpointError, ConfigError
from audiorep.train import (CheckpointManager, MetricsLogger, OptimConfig, apply_overrides, build,
                               build_optimizer, build_scheduler, capture_rng, lr_factor, param_groups,
                               read_metrics, restore_rng)
from audiorep.train.metrics import plot_loss_curve
from audiorep.train.task import TrainTask


@dataclass
class _Inner:
    rate: float = 0.1  # test field
    n: int = 2  # test field
    flag: bool = False  # test field
    maybe: int | None = None  # test field


@dataclass
class _Outer:
    name: str = "x"  # test field
    inner: _Inner = field(default_factory=_Inner)  # test section
    opt: _Inner | None = None  # optional section
    items: list[str] = field(default_factory=list)  # test list


def test_overrides_are_parsed_and_type_checked():
    d = apply_overrides(_Outer, {}, ["inner.rate=2e-4", "inner.n=3", "inner.flag=true", "inner.maybe=null",
                                     "name=run1", "items=[a, b]", "opt.n=5"])
    cfg = build(_Outer, d)
    assert cfg.inner.rate == 2e-4 and cfg.inner.n == 3 and cfg.inner.flag is True and cfg.inner.maybe is None
    assert cfg.items == ["a", "b"] and cfg.opt.n == 5 and cfg.name == "run1"
    cases = {
        "inner.n=1.5": "inner.n: expected int, got 1.5",
        "inner.rate=fast": "inner.rate: expected float",
        "inner.flag=2": "inner.flag: expected bool",
        "inner.nope=1": "unknown key 'nope' in inner",
        "inner=3": "is a section",
        "inner.rate": "expected key=value",
        "name.x=1": "name is a str, not a section",
    }
    for item, msg in cases.items():
        with pytest.raises(ConfigError, match=msg.replace("(", r"\(").replace(".", r"\.")):
            apply_overrides(_Outer, {}, [item])
    with pytest.raises(ConfigError, match="unknown key"):
        build(_Outer, {"inner": {"bogus": 1}})
    with pytest.raises(ConfigError, match="inner.n: expected int"):
        build(_Outer, {"inner": {"n": "three"}})


def test_param_groups_exclude_bias_and_layernorm_from_decay():
    m = nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2))
    decay, no_decay = param_groups(m, 0.01)
    assert {id(p) for p in decay["params"]} == {id(m[0].weight), id(m[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(m[0].bias), id(m[1].weight), id(m[1].bias), id(m[2].bias)}
    assert decay["weight_decay"] == 0.01 and no_decay["weight_decay"] == 0.0
    opt = build_optimizer(m, OptimConfig(lr=1e-3))
    assert isinstance(opt, torch.optim.AdamW)


def test_warmup_then_linear_decay():
    total, cfg = 100, OptimConfig(lr=1.0, warmup_ratio=0.07)
    f = [lr_factor(s, total, 0.07) for s in range(total)]
    assert f[0] == pytest.approx(1 / 7) and f[6] == pytest.approx(1.0)  # 7 warm-up steps reach the peak
    assert all(a > b for a, b in zip(f[7:], f[8:]))  # then strictly decreasing
    assert f[-1] == pytest.approx(1 / 93) and lr_factor(100, total, 0.07) == 0.0
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    sched = build_scheduler(opt, total, cfg)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx(f[:10])
    with pytest.raises(ConfigError):
        OptimConfig(warmup_ratio=1.0)


def test_checkpoints_atomic_keep_last_and_rng_roundtrip(tmp_path):
    mgr = CheckpointManager(tmp_path / "ck", keep_last=2)
    for s in (1, 2, 3):
        mgr.save({"step": s, "model": {"w": torch.full((2,), float(s))}, "rng": capture_rng()}, s)
    assert [s for s, _ in mgr.list()] == [2, 3] and mgr.latest().name == "step-00000003.pt"
    assert not list((tmp_path / "ck").glob("*.tmp"))  # no temp files left behind
    state = mgr.load(mgr.latest())
    assert state["model"]["w"].tolist() == [3.0, 3.0]

    random.seed(1); np.random.seed(1); torch.manual_seed(1)
    snap = capture_rng()
    a = (random.random(), np.random.rand(), torch.rand(3))
    restore_rng(snap)
    b = (random.random(), np.random.rand(), torch.rand(3))
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])

    bad = tmp_path / "ck" / "step-00000009.pt"
    bad.write_bytes(mgr.latest().read_bytes()[:100])  # a truncated file
    with pytest.raises(CheckpointError, match="step-00000009.pt"):
        mgr.load(bad)
    (tmp_path / "x.pt").write_bytes(b"")
    with pytest.raises(CheckpointError):
        mgr.load(tmp_path / "x.pt")


def test_metrics_csv_resume_truncates_and_plot(tmp_path):
    log = MetricsLogger(tmp_path, ["step", "loss"], tensorboard=False)
    for s in range(1, 6):
        log.log({"step": s, "loss": 1.0 / s})
    log.close()
    log = MetricsLogger(tmp_path, ["step", "loss"], resume_step=3, tensorboard=False)
    log.log({"step": 4, "loss": 0.3})
    log.close()
    rows = read_metrics(tmp_path / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4] and float(rows[-1]["loss"]) == 0.3
    pytest.importorskip("matplotlib")
    png = plot_loss_curve(tmp_path / "metrics.csv", tmp_path / "loss.png")
    assert png is not None and Path(png).read_bytes()[:4] == b"\x89PNG"


class _PassTask(TrainTask):
    """Three batches per pass over a fixed list; the trainer must cycle passes to spend a step budget."""

    name = "toy passes"

    def __init__(self, n_batches: int = 3):
        self.n_batches, self.seen = n_batches, []

    def train_batches(self, epoch, rank, world):
        for i in range(self.n_batches):
            self.seen.append((epoch, i))
            yield {"x": torch.full((2, 1), float(i))}

    def prepare(self, batch, step, device):
        return batch, 1.0, 2

    def forward(self, runner, batch):
        return runner(batch["x"]).pow(2).mean(), None


def test_step_budget_over_task_passes():
    """A task with train_batches and no epoch budget trains exactly max_steps steps, pass after pass, and the
    schedule spans those steps; a pass with no full step is an error, not an endless loop."""
    from audiorep.train import DistContext, TrainConfig, Trainer

    task = _PassTask()
    trainer = Trainer(nn.Linear(1, 1), task, None, TrainConfig(max_steps=7, progress=False), OptimConfig(lr=0.1),
                      None, DistContext())
    logs = trainer.fit()
    assert [e.step for e in logs] == list(range(1, 8)) and trainer.total_steps == 7
    assert task.seen == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2), (2, 0)]  # no batch drawn past the budget
    assert trainer.epoch == 2
    empty = _PassTask(n_batches=0)
    trainer = Trainer(nn.Linear(1, 1), empty, None, TrainConfig(max_steps=3, progress=False), OptimConfig(lr=0.1),
                      None, DistContext())
    with pytest.raises(ConfigError, match="no full step"):
        trainer.fit()


class _DevTask(_PassTask):
    """Dev scores from a fixed list, one per evaluation."""

    log_metrics = ["acc"]

    def __init__(self, scores):
        super().__init__(n_batches=1)
        self.scores = list(scores)

    def evaluate(self):
        return {"acc": self.scores.pop(0)}


def test_plateau_halves_the_lr_then_patience_stops(tmp_path):
    """plateau_patience evaluations without a better score cut the lr (kept across resume through the
    schedule's base rates); patience of them stops the run; best weights are those of the best epoch."""
    from audiorep.train import DistContext, TrainConfig, Trainer

    task = _DevTask([0.5, 0.6, 0.6, 0.55, 0.58, 0.59, 0.6, 0.6, 0.6])
    cfg = TrainConfig(epochs=20, patience=5, plateau_patience=2, plateau_factor=0.5, select_metric="acc",
                      progress=False)
    trainer = Trainer(nn.Linear(1, 1), task, None, cfg, OptimConfig(lr=0.1, schedule="constant", warmup_ratio=0.0),
                      tmp_path, DistContext())
    lrs = []
    trainer.fit(on_log=lambda e: lrs.append(e.lr))
    # epochs 1-2 improve; 3, 4 bad -> halve; 5, 6 bad -> halve; 7 bad -> patience 5 reached, stop
    assert trainer.epoch == 7 and trainer.selection.best_epoch == 2
    assert lrs[:4] == pytest.approx([0.1] * 4) and lrs[4:6] == pytest.approx([0.05] * 2)
    assert lrs[6:] == pytest.approx([0.025])
    assert trainer.scheduler.state_dict()["base_lrs"] == pytest.approx([0.025] * len(trainer.optimizer.param_groups))
    with pytest.raises(ConfigError, match="plateau_factor"):
        TrainConfig(plateau_factor=0.0)
