"""Multimodal sentiment regression metrics with MMSA's definitions (MOSI/MOSEI and SIMS variants).

Predictions and labels are continuous sentiment scores. The binary, 5- and 7-class scores are derived the way
the MMSA benchmark derives them, so numbers here are comparable with published MOSI/MOSEI/SIMS tables:

- ``Has0_acc_2`` / ``Has0_F1``: label >= 0 vs < 0 over every sample (zero counts as positive).
- ``Non0_acc_2`` / ``Non0_F1``: samples whose label is exactly 0 are dropped; then > 0 vs < 0 (by ``> 0``).
- F1 is the support-weighted F1 over the classes present in labels or predictions.
- ``Mult_acc_5`` / ``Mult_acc_7``: both sides clipped to [-2, 2] / [-3, 3], rounded to the nearest integer.
- ``MAE``: mean absolute error; ``Corr``: Pearson correlation (NaN when either side is constant).
- SIMS (labels in [-1, 1]): both sides clipped to [-1, 1]; classes by interval, left-open right-closed:
  Acc-2 (-1, 0] / (0, 1]; Acc-3 cut at -0.1, 0.1; Acc-5 cut at -0.7, -0.1, 0.1, 0.7.

No scikit-learn: the weighted F1 is implemented here (and tested against hand-computed values).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

import numpy as np

from .errors import ConfigError

T = TypeVar("T")

# SIMS class edges (MMSA uses -1.01 / 1.01 as the outer edges so that -1 and 1 fall inside).
_SIMS_EDGES = {
    2: (-1.01, 0.0, 1.01),
    3: (-1.01, -0.1, 0.1, 1.01),
    5: (-1.01, -0.7, -0.1, 0.1, 0.7, 1.01),
}


def _as_1d(x, name: str) -> np.ndarray:
    """Any tensor/array/list -> float64 1-D array, with an error naming the argument."""
    if hasattr(x, "detach"):  # torch tensor without importing torch here
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise ConfigError(f"{name}: holds NaN or infinite values")
    return arr


def _check_pair(preds, labels) -> tuple[np.ndarray, np.ndarray]:
    p, y = _as_1d(preds, "preds"), _as_1d(labels, "labels")
    if p.shape != y.shape:
        raise ConfigError(f"preds and labels differ in size: {p.size} vs {y.size}")
    if p.size == 0:
        raise ConfigError("preds/labels: no samples to score")
    return p, y


def accuracy(pred_cls: np.ndarray, true_cls: np.ndarray) -> float:
    """Fraction of equal entries (0.0 for empty input)."""
    pred_cls, true_cls = np.asarray(pred_cls), np.asarray(true_cls)
    return float((pred_cls == true_cls).mean()) if true_cls.size else 0.0


def weighted_f1(pred_cls: Sequence | np.ndarray, true_cls: Sequence | np.ndarray) -> float:
    """Support-weighted F1 over the classes present in either side.

    For each class c: precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R), with 0 wherever a
    denominator is 0 (scikit-learn's ``zero_division=0``). The average weights each class by its number of
    true samples, so a class that appears only among the predictions contributes nothing but still costs
    precision of the others through their false negatives. Returns 0.0 for empty input.
    """
    pred_cls, true_cls = np.asarray(pred_cls).reshape(-1), np.asarray(true_cls).reshape(-1)
    if pred_cls.shape != true_cls.shape:
        raise ConfigError(f"weighted_f1: predictions and labels differ in size: {pred_cls.size} vs {true_cls.size}")
    if true_cls.size == 0:
        return 0.0
    total = 0.0
    for c in np.union1d(pred_cls, true_cls):
        tp = float(np.sum((pred_cls == c) & (true_cls == c)))
        fp = float(np.sum((pred_cls == c) & (true_cls != c)))
        fn = float(np.sum((pred_cls != c) & (true_cls == c)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        total += f1 * (tp + fn)  # tp + fn = support of c among the labels
    return total / true_cls.size


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation; NaN when either side has zero variance (as numpy's corrcoef gives)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    da, db = a - a.mean(), b - b.mean()
    denom = np.sqrt((da * da).sum() * (db * db).sum())
    return float((da * db).sum() / denom) if denom > 0 else float("nan")


def mosi_metrics(preds, labels) -> dict[str, float]:
    """MMSA's regression metrics for CMU-MOSI / CMU-MOSEI (labels in [-3, 3]); accuracies in [0, 1]."""
    p, y = _check_pair(preds, labels)
    out: dict[str, float] = {}
    # Has0: zero is positive
    out["Has0_acc_2"] = accuracy(p >= 0, y >= 0)
    out["Has0_F1"] = weighted_f1(p >= 0, y >= 0)
    # Non0: drop neutral labels, then strict sign
    keep = y != 0
    out["Non0_acc_2"] = accuracy(p[keep] > 0, y[keep] > 0)
    out["Non0_F1"] = weighted_f1(p[keep] > 0, y[keep] > 0)
    # multi-class: clip then round (numpy rounds halves to even, as MMSA's np.round does)
    out["Mult_acc_5"] = accuracy(np.round(np.clip(p, -2, 2)), np.round(np.clip(y, -2, 2)))
    out["Mult_acc_7"] = accuracy(np.round(np.clip(p, -3, 3)), np.round(np.clip(y, -3, 3)))
    out["MAE"] = float(np.abs(p - y).mean())
    out["Corr"] = pearson(p, y)
    return out


def _sims_classes(x: np.ndarray, edges: tuple[float, ...]) -> np.ndarray:
    """Class index i where edges[i] < x <= edges[i+1] (left-open, right-closed intervals)."""
    cls = np.zeros(x.shape, dtype=np.int64)
    for i in range(len(edges) - 1):
        cls[(x > edges[i]) & (x <= edges[i + 1])] = i
    return cls


def sims_metrics(preds, labels) -> dict[str, float]:
    """MMSA's regression metrics for CH-SIMS (labels in [-1, 1]); accuracies in [0, 1]."""
    p, y = _check_pair(preds, labels)
    p, y = np.clip(p, -1.0, 1.0), np.clip(y, -1.0, 1.0)
    out: dict[str, float] = {}
    for k in (2, 3, 5):
        out[f"Mult_acc_{k}"] = accuracy(_sims_classes(p, _SIMS_EDGES[k]), _sims_classes(y, _SIMS_EDGES[k]))
    out["F1_score"] = weighted_f1(_sims_classes(p, _SIMS_EDGES[2]), _sims_classes(y, _SIMS_EDGES[2]))
    out["MAE"] = float(np.abs(p - y).mean())
    out["Corr"] = pearson(p, y)
    return out


# which metrics are better when lower (for best-checkpoint selection)


def regression_metrics(preds, labels, dataset: str = "mosi") -> dict[str, float]:
    """Dispatch by dataset family: ``"mosi"``/``"mosei"`` (and the bundled corpus, [-3, 3]) or ``"sims"``."""
    key = dataset.lower()
    if key in ("mosi", "mosei", "synth", "mmsa"):
        return mosi_metrics(preds, labels)
    if key in ("sims", "simsv2"):
        return sims_metrics(preds, labels)
    raise ConfigError(f"regression_metrics: unknown dataset family {dataset!r}; use 'mosi', 'mosei' or 'sims'")


# dev metrics a sentiment run may select its best checkpoint by (present for both mosi and sims families)
SELECTABLE = ("MAE", "Corr", "Has0_acc_2", "Non0_acc_2", "Has0_F1", "Non0_F1")


def check_select_metric(name: str, where: str = "select_metric") -> None:
    """ConfigError naming ``where`` unless ``name`` is in :data:`SELECTABLE` (before training, not at epoch end)."""
    if name not in SELECTABLE:
        raise ConfigError(f"{where} must be one of {', '.join(SELECTABLE)}; got {name!r}")


def derangement(n: int, seed: int = 0) -> list[int]:
    """A random permutation with no fixed point: ``out[i]`` is the item whose audio example ``i`` gets in the
    swapped-audio control (test texts scored with other utterances' speech; a model that ignores its audio
    scores the same as on the true pairs). One cycle through a seeded shuffle, so nobody keeps its own."""
    if n < 2:
        raise ConfigError(f"swapping audio needs at least 2 examples, got {n}")
    import random

    order = list(range(n))
    random.Random(seed).shuffle(order)
    out = [0] * n
    for i in range(n):
        out[order[i]] = order[(i + 1) % n]
    return out


def swapped_audio(audio: Sequence[T], seed: int = 0) -> list[T]:
    """The swapped-audio control: item ``i`` gets the audio of item ``derangement(n, seed)[i]`` (never its own).

    ``audio`` is whatever holds each item's speech (feature tensors, (frames, states) pairs, ...); texts and
    labels stay where they are, so scoring the result measures how much a model uses its audio."""
    return [audio[j] for j in derangement(len(audio), seed)]


def edit_distance(hyp: Sequence[T], ref: Sequence[T]) -> int:
    """Levenshtein distance between two token sequences (substitutions, insertions, deletions all cost 1)."""
    if len(hyp) < len(ref):
        hyp, ref = ref, hyp  # the row is the shorter sequence: O(min) memory
    row = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        diag, row[0] = row[0], i
        for j, r in enumerate(ref, 1):
            diag, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diag + (h != r))
    return row[-1]


def per(hyps: Sequence[Sequence[T]], refs: Sequence[Sequence[T]]) -> float:
    """Phone error rate over a whole set: sum of edit distances / sum of reference lengths (SUPERB's PR metric;
    long utterances weigh more than in a mean of per-utterance rates)."""
    if len(hyps) != len(refs):
        raise ConfigError(f"per: {len(hyps)} hypotheses but {len(refs)} references")
    total = sum(len(r) for r in refs)
    if total == 0:
        raise ConfigError("per: the references hold no tokens")
    return sum(edit_distance(h, r) for h, r in zip(hyps, refs)) / total
