"""Downstream plots (matplotlib is the ``plot`` extra, imported lazily; without it nothing is drawn)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

from ..plotting import pyplot, save_figure


def plot_layer_weights(weights: Mapping[str, Sequence[float]] | Sequence[float], path: str | os.PathLike,
                       title: str = "layer weights") -> Path | None:
    """Bar chart of softmax layer weights, one group of bars per entry of a dict; None without matplotlib."""
    plt = pyplot()
    if plt is None:
        return None
    series = dict(weights) if isinstance(weights, Mapping) else {"": weights}
    series = {k: [float(x) for x in v] for k, v in series.items()}
    K = max(len(v) for v in series.values())
    n = len(series)
    width = 0.8 / max(n, 1)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.5 + 0.5 * K * max(1.0, n / 2)), 3.4), dpi=100)
    for j, (name, vals) in enumerate(series.items()):
        xs = [i - 0.4 + width * (j + 0.5) for i in range(len(vals))]
        ax.bar(xs, vals, width=width, label=name or None)
    ax.set_xticks(range(K))
    ax.set_xticklabels(["emb"] + [str(i) for i in range(1, K)])
    ax.set_xlabel("hidden state (emb = input embedding, i = layer i)")
    ax.set_ylabel("softmax weight")
    ax.axhline(1.0 / K, color="gray", lw=0.8, ls="--")  # the uniform level the zero init starts from
    ax.set_title(title)
    if any(series):
        ax.legend(fontsize=8)
    return save_figure(fig, path)


def plot_learning_curves(curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], path: str | os.PathLike,
                         ylabel: str, title: str = "learning curves", xlabel: str = "epoch") -> Path | None:
    """One line per entry ``name -> (xs, ys)``; None without matplotlib."""
    plt = pyplot()
    if plt is None or not curves:
        return None
    fig, ax = plt.subplots(figsize=(6.0, 3.8), dpi=100)
    for name, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), marker="o", ms=3, lw=1.2, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    return save_figure(fig, path)
