"""Timing helpers shared by the benchmarks: interleaved repeats so a busy, shared machine slows every
contender alike, and medians rather than means so one stall does not move the figure."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def sync(device: str) -> None:
    """Wait for queued GPU work so wall time covers it (no-op on CPU)."""
    if str(device).startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int = 1,
                device: str = "cpu") -> dict[str, list[float]]:
    """Wall seconds of each callable, ``repeats`` times, alternating the order every round.

    Round r runs the callables in order (r even) or reverse order (r odd), so neither side always
    runs first after the other has warmed or evicted the caches. ``warmup`` untimed rounds come first.
    """
    names = list(fns)
    for _ in range(warmup):
        for n in names:
            fns[n]()
    sync(device)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        for n in (names if r % 2 == 0 else names[::-1]):
            sync(device)
            t0 = time.perf_counter()
            fns[n]()
            sync(device)
            times[n].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


def spread(xs: list[float]) -> float:
    """Relative spread (max - min) / median: a quick noise indicator to print beside a median."""
    m = statistics.median(xs)
    return float((max(xs) - min(xs)) / m) if m > 0 else 0.0
