"""Timing helpers shared by the benchmarks: interleaved repeats so a busy, shared machine slows every
contender alike, and medians rather than means so one stall does not move the figure; CUDA-event timing,
peak memory and failure rows for the kernel benchmarks."""

from __future__ import annotations

import os
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


def paired_ratios(base: list[float], other: list[float]) -> tuple[float, float, float]:
    """Median, min and max over rounds of ``base[r] / other[r]`` for two contenders timed by :func:`interleaved`.

    Both ran in the same round, seconds apart, so a machine that drifts between rounds (a shared VM does, by
    tens of percent over an hour) moves both sides of each ratio alike; the range shows what is left.
    """
    ratios = [b / o for b, o in zip(base, other) if o > 0]
    return float(statistics.median(ratios)), min(ratios), max(ratios)


def spread(xs: list[float]) -> float:
    """Relative spread (max - min) / median: a quick noise indicator to print beside a median."""
    m = statistics.median(xs)
    return float((max(xs) - min(xs)) / m) if m > 0 else 0.0


def time_fn(fn, device: "torch.device", warmup: int = 3, reps: int = 10) -> float:
    """Median milliseconds of fn() (CUDA events on GPU, perf_counter on CPU)."""
    import torch

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            torch.cuda.synchronize(device)
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def peak_memory_mb(fn, device: "torch.device") -> float | None:
    """Peak memory allocated during one fn() call above what was allocated before (MiB); None on CPU."""
    import torch

    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def failure_text(exc: BaseException, device: "torch.device") -> str:
    """A benchmark row's ``error`` field for a contender that failed (OOM on the naive reference at long T,
    a kernel that does not compile, ...): the first line of the message, the traceback with
    AUDIOREP_BENCH_DEBUG=1, and the CUDA cache emptied so the next contender starts clean."""
    import traceback

    import torch

    if os.environ.get("AUDIOREP_BENCH_DEBUG"):
        traceback.print_exc()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"


def gemm_roofline(shapes: list[tuple[int, int, int]], device: str = "cpu", dtype: str = "float32",
                  repeats: int = 3, max_rows: int = 2048, clock: str = "wall") -> dict:
    """The best GEMM rate this machine reaches right now on a model's own shapes: the roofline a benchmark's
    achieved GFLOP/s is a percentage of.

    Each (M, K, N) from :func:`audiorep.kernels.flops.gemm_shapes` is timed as the forward product
    (M, K) @ (K, N) and its two backward products (dX: (M, N) @ (N, K); dW: (K, M) @ (M, N)), the fastest of
    ``repeats`` calls each (GEMM speed saturates well before ``max_rows`` rows, so M is capped there to keep
    the measurement short). On CPU each product is timed twice: ``torch.mm`` (MKL in the PyPI wheels) and
    oneDNN's matmul (the op audiorep's CPU linears call), since either library can be the faster one on a
    given processor (MKL takes a slow path on AMD CPUs). ``clock="cpu"`` measures process CPU time, to match
    a benchmark timed that way. Returns {"gflops": best GFLOP/s, "shape": "MxKxN" it came from, "library":
    which one reached it, "by_library": {library: best GFLOP/s}, "dtype": ..., "clock": ...}.
    """
    import torch

    dt = getattr(torch, dtype)
    tick = time.process_time if clock == "cpu" else time.perf_counter
    libraries = {"torch.mm": torch.mm}
    if device == "cpu":
        from audiorep.kernels.capabilities import HAVE_ONEDNN_LINEAR
        from audiorep.kernels.fused import onednn_mm

        if HAVE_ONEDNN_LINEAR:
            libraries["oneDNN"] = lambda a, b: onednn_mm(a, b.t())  # a @ b, b passed as (N, K) strided view
    best, where, best_lib = 0.0, None, None
    by_library = {name: 0.0 for name in libraries}
    for M, K, N in shapes:
        M = min(M, max_rows)
        for a_shape, b_shape, label in (((M, K), (K, N), "fwd"), ((M, N), (N, K), "dX"), ((K, M), (M, N), "dW")):
            a = torch.randn(*a_shape, device=device, dtype=dt)
            b = torch.randn(*b_shape, device=device, dtype=dt)
            for lib, mm in libraries.items():
                mm(a, b)  # warm-up (allocations, oneDNN/cuBLAS heuristics)
                fastest = float("inf")
                for _ in range(repeats):
                    sync(device)
                    t0 = tick()
                    mm(a, b)
                    sync(device)
                    fastest = min(fastest, tick() - t0)
                rate = 2 * M * K * N / max(fastest, 1e-9) / 1e9
                by_library[lib] = max(by_library[lib], rate)
                if rate > best:
                    best, where, best_lib = rate, f"{label} {a_shape[0]}x{a_shape[1]}x{b_shape[1]}", lib
    return {"gflops": best, "shape": where, "library": best_lib, "by_library": by_library, "dtype": dtype,
            "clock": clock}


def roofline_columns(flops: float, seconds: float, roof_gflops: float) -> dict:
    """The two columns every benchmark row carries: achieved GFLOP/s and its share of the measured GEMM roofline."""
    achieved = flops / seconds / 1e9 if seconds > 0 else 0.0
    return {"gflops_s": achieved, "roofline_pct": 100.0 * achieved / roof_gflops if roof_gflops > 0 else None}
