"""Shared helpers for the GPU benchmarks: environment header, timing, atomic JSON + markdown output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def environment(device: torch.device, dtype: torch.dtype) -> dict:
    """What every result file carries: device, dtype and library versions."""
    env = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or 'unknown'})",
        "capability": "sm_%d%d" % torch.cuda.get_device_capability(device) if device.type == "cuda" else None,
        "dtype": str(dtype).replace("torch.", ""),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "python": sys.version.split()[0],
        "triton_interpret": os.environ.get("TRITON_INTERPRET") == "1",
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        import triton

        env["triton"] = triton.__version__
    except ImportError:
        env["triton"] = None
    return env


def print_environment(env: dict) -> None:
    print("  ".join(f"{k}={v}" for k, v in env.items()), flush=True)


def time_fn(fn, device: torch.device, warmup: int = 3, reps: int = 10) -> float:
    """Median milliseconds of fn() (CUDA events on GPU, perf_counter on CPU)."""
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


def peak_memory_mb(fn, device: torch.device) -> float | None:
    """Peak memory allocated during one fn() call above what was allocated before (MiB); None on CPU."""
    if device.type != "cuda":
        fn()
        return None
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return (torch.cuda.max_memory_allocated(device) - before) / 2**20


def write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.replace(tmp, path)


def write_results(out_dir: Path, stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write <stem>.json and <stem>.md under out_dir; returns both paths."""
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_atomic(js, json.dumps(payload, indent=2) + "\n")
    write_atomic(md, markdown)
    return js, md


def slug(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def fmt(x):
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def failure_text(exc: BaseException, device: torch.device) -> str:
    """A benchmark row's ``error`` field for a contender that failed (OOM on the naive reference at long T,
    a kernel that does not compile, ...): the first line of the message, the traceback with
    AUDIOREP_BENCH_DEBUG=1, and the CUDA cache emptied so the next contender starts clean."""
    import traceback

    if os.environ.get("AUDIOREP_BENCH_DEBUG"):
        traceback.print_exc()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    first = str(exc).splitlines()[0][:200] if str(exc) else ""
    return f"{type(exc).__name__}: {first}"
