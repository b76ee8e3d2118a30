"""Early stopping and best-checkpoint selection by one named dev metric."""

from __future__ import annotations

from typing import Any

# metrics where lower is better (select_mode="auto"); anything else is maximised
LOWER_IS_BETTER = frozenset({"MAE", "loss"})


def is_better(metric: str, new: float, best: float | None, mode: str = "auto") -> bool:
    """True when ``new`` improves on ``best`` for ``metric`` (NaN never improves); ``mode`` "max"/"min"/"auto"."""
    if new != new:  # NaN
        return False
    if best is None or best != best:
        return True
    if mode == "auto":
        mode = "min" if metric in LOWER_IS_BETTER else "max"
    return new < best if mode == "min" else new > best


class Selection:
    """Tracks the best value of ``metric`` over evaluations and the evaluations since it improved.

    ``mode`` "max"/"min", or "auto" (min for the names in :data:`LOWER_IS_BETTER`). A NaN never improves.
    ``metric=None`` selects nothing: every evaluation counts as the best, nothing stops early.
    """

    def __init__(self, metric: str | None, mode: str = "auto", patience: int | None = None):
        self.metric, self.patience = metric, patience
        self.mode = ("min" if metric in LOWER_IS_BETTER else "max") if mode == "auto" else mode
        self.best: float | None = None
        self.best_epoch = 0
        self.best_step = 0
        self.best_dev: dict[str, float] = {}
        self.bad = 0  # evaluations since the last improvement
        self.history: list[dict[str, float]] = []  # one row per evaluation

    def update(self, dev: dict[str, float], epoch: int, step: int) -> bool:
        """Record one evaluation; True when it is the new best."""
        improved = self.metric is None or is_better(self.metric, float(dev[self.metric]), self.best, self.mode)
        if improved:
            self.best = float(dev[self.metric]) if self.metric is not None else None
            self.best_epoch, self.best_step, self.bad = epoch, step, 0
            self.best_dev = {k: float(v) for k, v in dev.items()}
        else:
            self.bad += 1
        return improved

    def should_stop(self) -> bool:
        return self.patience is not None and self.bad >= self.patience

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "best_epoch": self.best_epoch, "best_step": self.best_step,
                "best_dev": self.best_dev, "bad": self.bad, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = state.get("best")
        self.best_epoch = int(state.get("best_epoch", 0))
        self.best_step = int(state.get("best_step", 0))
        self.best_dev = dict(state.get("best_dev", {}))
        self.bad = int(state.get("bad", 0))
        self.history = list(state.get("history", []))
