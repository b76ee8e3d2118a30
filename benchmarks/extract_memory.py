"""Peak memory of ``audiorep extract`` over 1, 3 and 10 long files: does it stay flat as the input list grows?

Each count runs the real command in a fresh Python process (so one run's allocations never hide in
another's peak) on synthetic 2-minute waveforms written with soundfile, and reads that process's peak
resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``) when the command returns.

    python benchmarks/run.py extract_memory                       # 1, 3, 10 files of 120 s, mockingjay-base
    python benchmarks/run.py extract_memory --quick               # 1, 3 files of 10 s (a smoke run)
    python benchmarks/run.py extract_memory --mem-files 1,3 --mem-seconds 30
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DESCRIPTION = "audiorep extract peak RSS over 1, 3 and 10 long files (fresh process per count)"

# Runs inside the child: the command itself, then its own peak RSS (KiB on Linux) on the last line.
_CHILD = """
import json, resource, sys, time
sys.argv = ["audiorep"] + sys.argv[1:]
from audiorep.cli import main
t0 = time.perf_counter()
rc = main(sys.argv[1:])
print(json.dumps({"rc": rc, "seconds": time.perf_counter() - t0,
                  "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def add_arguments(parser) -> None:
    g = parser.add_argument_group("extract_memory")
    g.add_argument("--mem-model", default="mockingjay-base", help="preset run with --no-pretrained")
    g.add_argument("--mem-files", default=None, help="comma-separated file counts (default 1,3,10; quick 1,3)")
    g.add_argument("--mem-seconds", type=float, default=None, help="seconds per file (default 120; quick 10)")
    g.add_argument("--mem-extra", default="", help="extra extract flags, e.g. '--layer -1'")


def _write_wavs(folder: Path, n: int, seconds: float, sr: int = 16000) -> list[Path]:
    import numpy as np
    import soundfile as sf

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        p = folder / f"long{i:02d}.wav"
        sf.write(p, (0.1 * rng.standard_normal(int(seconds * sr))).astype("float32"), sr)
        paths.append(p)
    return paths


def run(args) -> dict:
    import torch

    counts = [int(c) for c in (args.mem_files or ("1,3" if args.quick else "1,3,10")).split(",")]
    seconds = args.mem_seconds or (10.0 if args.quick else 120.0)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        wavs = _write_wavs(tmp, max(counts), seconds)
        for n in counts:
            out = tmp / f"out{n}.safetensors"
            cmd = [sys.executable, "-c", _CHILD, "extract", args.mem_model, "--no-pretrained",
                   *map(str, wavs[:n]), "--out", str(out), *args.mem_extra.split()]
            t0 = time.perf_counter()
            r = subprocess.run(cmd, capture_output=True, text=True,
                               env={**__import__("os").environ, "OMP_NUM_THREADS": str(torch.get_num_threads())})
            last = (r.stdout.strip().splitlines() or ["{}"])[-1]
            try:
                child = json.loads(last)
            except ValueError:
                child = {}
            if r.returncode != 0 or child.get("rc") != 0:
                rows.append({"files": n, "error": (r.stderr.strip().splitlines() or ["?"])[-1][:200]})
                continue
            rows.append({"files": n, "audio_s": n * seconds, "peak_rss_mb": child["peak_rss_kib"] / 1024,
                         "output_mb": out.stat().st_size / 2**20, "seconds": time.perf_counter() - t0})
            print(f"  {n} file(s): {rows[-1]}", flush=True)
    notes = [f"{seconds:g} s random waveforms per file, {args.mem_model} (random weights), "
             f"`audiorep extract {args.mem_model} --no-pretrained FILES --out OUT {args.mem_extra}`".rstrip(),
             "peak_rss_mb = the extract process's ru_maxrss (MiB); output_mb = the size of the written file"]
    return {"rows": rows, "notes": notes, "meta": {"model": args.mem_model}}
