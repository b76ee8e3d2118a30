"""Shared benchmark runner: ``python benchmarks/run.py [NAME ...] [--quick] [--threads N] [--repeats N]``.

A benchmark is a module ``benchmarks/<name>.py`` (not starting with ``_``, not this file) that defines

    DESCRIPTION: str                       # one line for --list and the markdown heading
    def add_arguments(parser) -> None      # optional: its own command-line options
    def run(args) -> dict                  # {"rows": [ {column: value, ...}, ... ],
                                           #  "meta": {...}  (optional; e.g. device, dtype, attention_backend),
                                           #  "notes": [str, ...]  (optional; printed under the table),
                                           #  "tables": {title: rows}  (optional; extra tables below)}

The runner records the environment (device, dtype, torch version, thread count, attention backend, CPU,
git commit, command) beside every result and writes ``benchmarks/results/<name>.json`` and
``benchmarks/results/<name>.md`` (``<name>-quick.*`` under ``--quick``). Keys a benchmark puts in
``meta`` override the runner's defaults, so a benchmark that runs on CUDA or in bf16 says so itself;
the attention backend default is what ``audiorep.kernels.resolve_backend`` picks on that device.
Shared helpers (interleaved timing, medians, CUDA-event timing, peak memory) live in ``benchmarks/_timing.py``.

The kernel benchmarks (``attention``, ``fused_ops``, ``e2e_gpu``) are scripts with their own options and
output files: they define ``main(argv)`` instead of ``run(args)``; ``run.py NAME [their options]`` hands the
options on (``python benchmarks/run.py attention --cpu-smoke``), and they use the helpers at the end of this
file (GPU environment header, atomic result files, tuned.json merging). Running every benchmark (no names)
runs the ``run(args)`` ones.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from _timing import failure_text, peak_memory_mb, time_fn  # noqa: F401  (re-exported for the kernel scripts)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"


def discover() -> dict[str, Path]:
    """name -> path of every benchmark module beside this file."""
    return {
        p.stem: p for p in sorted(HERE.glob("*.py"))
        if p.name != "run.py" and not p.name.startswith("_")
    }


def load_module(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"audiorep_benchmarks.{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    if not callable(getattr(module, "run", None)) and not is_script(module):
        raise SystemExit(f"benchmarks/{path.name}: defines neither run(args) -> dict nor main(argv) -> int")
    return module


def is_script(module: ModuleType) -> bool:
    """A kernel benchmark with its own command line: ``main(argv)`` and no ``run(args)``."""
    return not callable(getattr(module, "run", None)) and callable(getattr(module, "main", None))


def cpu_name() -> str:
    """The CPU model as /proc/cpuinfo names it (platform.processor() is often empty on Linux)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=HERE, capture_output=True, text=True,
                             timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=HERE,
                               capture_output=True, text=True, timeout=10)
        return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "") if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment(device: str) -> dict[str, Any]:
    """What every result must carry so numbers from different machines are never confused."""
    import torch

    from audiorep.kernels import resolve_backend

    env: dict[str, Any] = {
        "device": device,
        "device_name": torch.cuda.get_device_name(0) if device.startswith("cuda") else cpu_name(),
        "dtype": "float32",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "attention_backend": resolve_backend(torch.empty(1, 1, 1, 1, device=device)),
        "python": platform.python_version(),
        "git": git_commit(),
        "command": " ".join([Path(sys.argv[0]).name] + sys.argv[1:]),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    try:
        import audiorep

        env["audiorep"] = audiorep.__version__
    except ImportError:
        pass
    return env


def fmt(v: Any) -> str:
    if isinstance(v, float):
        if v == 0.0:
            return "0"
        if abs(v) >= 1000 or abs(v) < 1e-3:
            return f"{v:.2e}"
        return f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}"
    return "" if v is None else str(v)


def table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> list[str]:
    """Markdown table lines; columns are ``columns`` then any other keys in first-seen order."""
    cols: list[str] = list(columns or [])
    for r in rows:
        cols += [k for k in r if k not in cols]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return lines + ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]


def markdown(name: str, description: str, result: dict[str, Any]) -> str:
    meta = result["meta"]
    lines = [f"# {name}", "", description, ""]
    lines.append(", ".join(f"{k}: `{meta[k]}`" for k in meta if meta[k] is not None))
    lines += [""] + table(result["rows"], result.get("columns"))
    notes = result.get("notes") or []
    if notes:
        lines += [""] + [f"- {n}" for n in notes]
    for title, rows in (result.get("tables") or {}).items():  # optional extra tables, e.g. a profile
        lines += ["", f"## {title}", ""] + table(rows)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    available = discover()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help=f"benchmarks to run (default: all of {sorted(available)})")
    parser.add_argument("--quick", action="store_true", help="short inputs and few repeats (a smoke run)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats per case (median reported)")
    parser.add_argument("--device", default="cpu", help="torch device for benchmarks that honour it")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for <name>.json and <name>.md")
    parser.add_argument("--tag", default=None, help="write <name>-<tag>.json/.md (keeps several runs apart)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    # Parse names first so only the chosen modules are imported and add their options.
    known, rest = parser.parse_known_args(argv)
    names = known.names or sorted(available)
    unknown = [n for n in names if n not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; available: {sorted(available)}")
    modules = {n: load_module(n, available[n]) for n in names}
    if known.list:
        for n, m in modules.items():
            print(f"{n:20s} {getattr(m, 'DESCRIPTION', '')}")
        return 0
    scripts = [n for n, m in modules.items() if is_script(m)]
    if scripts and known.names:
        if len(known.names) > 1:
            parser.error(f"{scripts[0]} has its own options and runs alone: run.py {scripts[0]} [options]")
        return int(modules[scripts[0]].main(rest) or 0)
    modules = {n: m for n, m in modules.items() if n not in scripts}
    for m in modules.values():
        if hasattr(m, "add_arguments"):
            m.add_arguments(parser)
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, module in modules.items():
        description = getattr(module, "DESCRIPTION", name)
        print(f"== {name}: {description}", flush=True)
        result = module.run(args)
        if not isinstance(result, dict) or not isinstance(result.get("rows"), list):
            raise SystemExit(f"benchmarks/{name}.py: run(args) must return a dict with a 'rows' list")
        result["meta"] = {**environment(args.device), "quick": bool(args.quick), **(result.get("meta") or {})}
        stem = name + (f"-{args.tag}" if args.tag else "") + ("-quick" if args.quick else "")  # smoke runs never
        # overwrite the real figures
        (args.out / f"{stem}.json").write_text(json.dumps({"name": name, "description": description, **result},
                                                          indent=2, default=str) + "\n")
        md = markdown(name, description, result)
        (args.out / f"{stem}.md").write_text(md)
        print(md, flush=True)
        print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}", flush=True)
    return 0


# ---- helpers for the kernel benchmarks (scripts with main(argv)) ----

def kernel_device(cpu_smoke: bool, script: str):
    """The device a kernel benchmark measures on, or None (after saying why) when there is no GPU.

    ``cpu_smoke`` runs the code path on CPU under Triton's interpreter; the variable must be set before
    triton (or audiorep's kernel config) is first used."""
    if cpu_smoke:
        os.environ["TRITON_INTERPRET"] = "1"
    import torch

    if not cpu_smoke and not torch.cuda.is_available():
        print(f"benchmarks/{script}: no CUDA device here, nothing measured. On a GPU machine run it without "
              "flags; to exercise the code path on CPU use --cpu-smoke.")
        return None
    return torch.device("cpu" if cpu_smoke else "cuda")


def kernel_environment(device, dtype) -> dict:
    """What every kernel result file carries: device, dtype and library versions."""
    import time

    import torch

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


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` through a temp file and a rename (a crash never leaves half a result file)."""
    from audiorep.fileio import atomic_write_bytes

    atomic_write_bytes(path, text.encode("utf-8"))


def write_results(out_dir: Path, stem: str, payload: dict, markdown: str) -> tuple[Path, Path]:
    """Write <stem>.json and <stem>.md under out_dir; returns both paths."""
    js, md = out_dir / f"{stem}.json", out_dir / f"{stem}.md"
    write_atomic(js, json.dumps(payload, indent=2) + "\n")
    write_atomic(md, markdown)
    return js, md


def merge_tuned(path: Path, entries: list[dict], key: Callable[[dict], tuple], note: str | None = None) -> None:
    """Replace the entries of tuned.json at ``path`` that ``entries`` re-measured (same ``key``), keep the rest."""
    try:
        table = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        table = {"schema": 1, "entries": []}
    fresh = {key(e) for e in entries}
    table["schema"] = 1
    if note:
        table["note"] = note
    table["entries"] = [e for e in table.get("entries", []) if key(e) not in fresh] + entries
    write_atomic(path, json.dumps(table, indent=2) + "\n")


def slug(text: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in text).strip("-").replace("--", "-")


def markdown_table(headers: list[str], rows: list[list]) -> str:
    def cell(x):
        if x is None:
            return "-"
        if isinstance(x, float):
            return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"
        return str(x)

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(x) for x in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))  # run from a checkout without installing
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
