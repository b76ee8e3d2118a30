"""Run logs: a CSV of per-step metrics (always), TensorBoard (when installed), and a loss-curve PNG (matplotlib)."""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path
from typing import Any, Mapping

from ..plotting import pyplot, save_figure

log = logging.getLogger(__name__)


class MetricsLogger:
    """Append rows to ``metrics.csv`` (or ``filename``); mirror them to TensorBoard if ``torch.utils.tensorboard`` works.

    On resume the rows after the resumed step are dropped first, so the file never holds two values for one
    step (a killed run may have logged steps past its last checkpoint).
    """

    def __init__(self, directory: str | os.PathLike, fields: list[str], resume_step: int | None = None,
                 tensorboard: bool = True, filename: str = "metrics.csv"):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.path = self.directory / filename
        self.fields = fields
        if resume_step is not None and self.path.is_file():
            rows = [r for r in read_metrics(self.path) if int(float(r.get("step", 0))) <= resume_step]
        else:
            rows = []
        with open(self.path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        self._file = open(self.path, "a", newline="")
        self._writer = csv.DictWriter(self._file, fieldnames=fields, extrasaction="ignore")
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.directory / "tensorboard"))
            except Exception:  # tensorboard not installed: CSV only
                self._tb = None

    def log(self, row: Mapping[str, Any]) -> None:
        self._writer.writerow({k: _fmt(v) for k, v in row.items()})
        self._file.flush()
        if self._tb is not None:
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self._tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


def read_metrics(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def plot_loss_curve(csv_path: str | os.PathLike, png_path: str | os.PathLike, key: str = "loss",
                    title: str = "pretraining loss") -> Path | None:
    """Plot ``key`` against step; returns the PNG path, or None when matplotlib is not installed."""
    plt = pyplot()
    if plt is None:
        log.info("matplotlib not installed: no loss-curve PNG (pip install 'audiorep[plot]')")
        return None
    rows = [r for r in read_metrics(csv_path) if r.get(key) not in (None, "")]
    if not rows:
        return None
    steps = [int(float(r["step"])) for r in rows]
    vals = [float(r[key]) for r in rows]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(steps, vals, lw=1.0, alpha=0.5, label=key)
    if len(vals) >= 10:  # a moving average makes the trend readable through batch noise
        w = max(2, len(vals) // 20)
        smooth = [sum(vals[max(0, i - w + 1): i + 1]) / len(vals[max(0, i - w + 1): i + 1]) for i in range(len(vals))]
        ax.plot(steps, smooth, lw=2.0, label=f"{key} (moving avg {w})")
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save_figure(fig, png_path)


def plot_held_out(csv_path: str | os.PathLike, png_path: str | os.PathLike,
                  title: str = "held-out reconstruction") -> Path | None:
    """Two panels from a pretraining run's ``heldout.csv``: held-out loss of the model and of the
    predict-zero / interpolation references against step, and each layer's mean attended distance."""
    plt = pyplot()
    if plt is None:
        return None
    rows = read_metrics(csv_path)
    if not rows:
        return None
    steps = [int(float(r["step"])) for r in rows]
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100)
    for key, style in (("dev_model", "-o"), ("dev_zero", "--"), ("dev_interpolation", ":")):
        if rows[0].get(key) not in (None, ""):
            ax.plot(steps, [float(r[key]) for r in rows], style, ms=3, label=key[4:])
    ax.set_xlabel("step")
    ax.set_ylabel("L1 on hidden frames")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    for key in sorted(k for k in rows[0] if k.startswith("dev_attn_dist_L")):
        ax2.plot(steps, [float(r[key]) for r in rows], "-o", ms=3, label=f"layer {key.rsplit('L', 1)[1]}")
    ax2.set_xlabel("step")
    ax2.set_ylabel("frames")
    ax2.set_title("mean attended distance from hidden frames")
    ax2.set_yscale("log")
    ax2.grid(alpha=0.3)
    ax2.legend()
    return save_figure(fig, png_path)
