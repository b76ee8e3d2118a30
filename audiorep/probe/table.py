"""The probe table: {log-mel floor, upstreams} x {weighted-sum, finetune, last} x {registered tasks} on one corpus.

Every cell is one :func:`run_downstream` (linear probe heads, early stopping on dev, test with the best dev
weights). Frozen modes share one on-disk cache of every hidden state per upstream and split, so an
upstream runs once over the corpus for all its frozen cells. Output folder::

    probe_table.md            the table (test phone frame accuracy / speaker accuracy, %)
    results.json              every cell's test + dev metrics, epochs, layer weights, timings
    layer_weights_<task>.png  weighted-sum softmax weights per upstream
    curves_<task>.png         dev metric per epoch for every (upstream, mode)
    runs/<task>-<upstream>-<mode>/   each cell's run folder (metrics.csv, best.pt, results.json)
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from .plots import plot_layer_weights, plot_learning_curves
from ..train.select import LOWER_IS_BETTER
from .run import DownstreamConfig, run_downstream
from .tasks import TASKS, build_task

log = logging.getLogger(__name__)

LOGMEL = "log-mel"
STACKED = "log-mel ±k"  # the stacked-context floor; k picked per task on dev among CONTEXTS
CONTEXTS = (1, 2, 4, 8)  # frames each side
# recipes/pretrain_<x>.sh on the bundled corpus writes exp/<x>-small-<date>-<time>/final; the newest counts
DEFAULT_MODELS = {"Mockingjay": "mockingjay-small", "AALBERT": "aalbert-small", "TERA": "tera-small"}
MODE_LABEL = {"weighted-sum": "weighted sum", "finetune": "finetune", "last": "last layer"}


def default_models(exp_dir: str | Path = "exp") -> dict[str, str]:
    """The newest finished bundled-corpus pretraining output per model (``exp/<x>-small*/final``); a warning
    names each missing one and the recipe that makes it."""
    found = {}
    for name, stem in DEFAULT_MODELS.items():
        finals = [p for p in Path(exp_dir).glob(f"{stem}*/final") if (p / "config.json").is_file()]
        if finals:
            found[name] = str(max(finals, key=lambda p: (p / "config.json").stat().st_mtime))
        else:
            log.warning("%s: no %s/%s*/final (run recipes/pretrain_%s.sh first); left out of the table",
                        name, exp_dir, stem, name.lower())
    return found


def parse_models(items: Sequence[str]) -> dict[str, str]:
    """``NAME=PATH`` or ``PATH`` (named by its folder) -> {name: path}."""
    out: dict[str, str] = {}
    for item in items:
        name, _, path = item.rpartition("=") if "=" in item else ("", "", item)
        if not name:
            p = Path(path)
            name = p.parent.name if p.name == "final" else p.name
        if name in out:
            raise ConfigError(f"--models: name {name!r} given twice")
        out[name] = path
    return out


@dataclass
class ProbeTable:
    out_dir: Path
    markdown: str
    cells: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def table_heads() -> dict[str, str]:
    """Each registered task's probe-table head (its ``table_head``, else its ``default_head``)."""
    return {name: cls.table_head or cls.default_head for name, cls in TASKS.items()}


def _percent(metric: str) -> bool:
    """Accuracies are shown in %, errors and correlations as they are."""
    return metric.endswith("acc")


def _fmt(v: float | None, metric: str) -> str:
    if v is None:
        return "—"
    return f"{100 * v:.1f}" if _percent(metric) else f"{v:.3f}"


def probe_table(models: Mapping[str, str], modes: Sequence[str] = ("weighted-sum", "finetune", "last"),
                tasks: Sequence[str] = ("phone", "speaker"), data: str = "synth",
                out_dir: str | Path = "exp/probe_table", epochs: int | None = None, finetune_epochs: int = 2,
                max_utts: int | None = None, finetune_train_utts: int | None = 160, device: str = "auto", progress: bool = True,
                keep_cache: bool = False, heads: Mapping[str, str] | None = None,
                overrides: Mapping[str, Any] | None = None, contexts: Sequence[int] = CONTEXTS) -> ProbeTable:
    """Run the grid and write the table + plots (see the module doc). Two floors are always included: the
    log-mel frames, and the frames stacked with k neighbours on each side (``contexts``: the k values tried;
    the one with the best dev score per task fills the row, so an encoder must beat local context stacking,
    not only single frames). Frozen cells train for at most ``epochs`` (None: the DownstreamConfig default,
    with its lr-halving and early-stopping rule).

    Finetune cells run the upstream every step, so they train on a seeded subset of ``finetune_train_utts``
    training utterances (None = all) for ``finetune_epochs``; the frozen cells use every utterance.
    Cells already finished in ``out_dir/runs`` (a results.json written by the same settings) are reused, so
    an interrupted table continues where it stopped.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cache_dir = out / "cache"
    stacked = {f"log-mel ±{k}": f"logmel-ctx{k}" for k in contexts}
    upstreams = {LOGMEL: "logmel", **stacked, **dict(models)}
    frozen_epochs = {} if epochs is None else {"epochs": epochs}
    heads = {**table_heads(), **dict(heads or {})}
    unknown = sorted(set(tasks) - set(TASKS))
    if unknown:
        raise ConfigError(f"tasks: unknown {unknown}; registered: {', '.join(TASKS)}")
    metric = {t: build_task(t, heads[t]).primary for t in tasks}  # the dev metric that picks each cell's epoch
    t_all = time.perf_counter()
    cells: list[dict[str, Any]] = []
    for task in tasks:
        for name, path in upstreams.items():
            # the floor has one hidden state and no parameters: every mode is the same probe, run it once
            for mode in (["last"] if name == LOGMEL or name in stacked else list(modes)):
                run_dir = out / "runs" / f"{task}-{name.replace(' ±', '-ctx')}-{mode}"
                budget = {"epochs": finetune_epochs} if mode == "finetune" else frozen_epochs
                settings = dict(task=task, upstream=path, mode=mode, head=heads[task], data=data,
                                out_dir=str(run_dir), **budget, max_utts=max_utts,
                                max_train_utts=finetune_train_utts if mode == "finetune" else None,
                                device=device, progress=progress, feature_cache=str(cache_dir),
                                **(overrides or {}))
                cfg = DownstreamConfig(**settings)
                cell = _finished(run_dir, settings)
                if cell is None:
                    print(f"[probe-table] {task} / {name} / {mode} ...", file=sys.stderr)
                    t0 = time.perf_counter()
                    res = run_downstream(cfg, overwrite=True)
                    cell = {"task": task, "upstream": name, "path": path, "mode": mode,
                            "metric": metric[task], "test": res.test, "best_dev": res.best_dev,
                            "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
                            "layer_weights": res.layer_weights, "history": res.history,
                            "cache_seconds": res.cache_seconds, "train_seconds": res.train_seconds,
                            "seconds": time.perf_counter() - t0, "settings": settings}
                    atomic_write_bytes(run_dir / "cell.json", json.dumps(cell, indent=2).encode())
                    print(f"[probe-table] {task} / {name} / {mode}: test {metric[task]} "
                          f"{res.test[metric[task]]:.4f} ({cell['seconds']:.0f} s)", file=sys.stderr)
                cells.append(cell)
    seconds = time.perf_counter() - t_all
    md = render_markdown(cells, list(upstreams), list(modes), list(tasks), data, seconds, heads, list(stacked), metric)
    (out / "probe_table.md").write_text(md)
    atomic_write_bytes(out / "results.json", json.dumps({"cells": cells, "seconds": seconds}, indent=2).encode())
    _plots(cells, out, tasks, metric)
    if not keep_cache and cache_dir.is_dir():
        shutil.rmtree(cache_dir)  # hidden states of every layer: hundreds of MB per upstream
    return ProbeTable(out, md, cells, seconds)


def _finished(run_dir: Path, settings: Mapping[str, Any]) -> dict[str, Any] | None:
    """The cell written by an earlier call with exactly these settings, else None."""
    path = run_dir / "cell.json"
    if not path.is_file():
        return None
    cell = json.loads(path.read_text())
    return cell if cell.get("settings") == json.loads(json.dumps(dict(settings))) else None


def _best_stacked(cells: list[dict[str, Any]], task: str, stacked: Sequence[str]) -> dict[str, Any] | None:
    """The stacked-context cell of ``task`` with the best dev score (lower is better for MAE)."""
    cands = [c for c in cells if c["task"] == task and c["upstream"] in stacked]
    if not cands:
        return None
    sign = -1.0 if cands[0]["metric"] in LOWER_IS_BETTER else 1.0
    return max(cands, key=lambda c: sign * float(c["best_dev"][c["metric"]]))


def render_markdown(cells: list[dict[str, Any]], upstreams: list[str], modes: list[str], tasks: list[str],
                    data: str, seconds: float, heads: Mapping[str, str] | None = None,
                    stacked: Sequence[str] = (), metric: Mapping[str, str] | None = None) -> str:
    """Rows = upstreams, columns = task x mode. The floors fill their rows (they have no layers to weigh);
    the stacked-context candidates make one row, each task's k chosen on dev, and a second table lists them."""
    heads = {**table_heads(), **dict(heads or {})}
    metric = dict(metric or {t: build_task(t, heads[t]).primary for t in tasks})
    floors = {LOGMEL, *stacked}
    best = {t: _best_stacked(cells, t, stacked) for t in tasks}

    def get(task: str, name: str, mode: str) -> float | None:
        if name == STACKED:
            c = best[task]
            return None if c is None else float(c["test"][c["metric"]])
        for c in cells:
            if c["task"] == task and c["upstream"] == name and (c["mode"] == mode or name in floors):
                return float(c["test"][c["metric"]])
        return None

    unit = {t: metric[t].replace("_", " ") + (" %" if _percent(metric[t]) else "") for t in tasks}
    head = ["upstream"] + [f"{t} {MODE_LABEL.get(m, m)}" for t in tasks for m in modes]
    lines = [
        f"Probe table on `{data}` (test split, best dev epoch; "
        + "; ".join(f"{t}: {unit[t]}, head {heads[t]}" for t in tasks) + ").",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
    ]
    rows = [n for n in upstreams if n not in stacked]
    if stacked:
        rows.insert(1, STACKED)
    for name in rows:
        label = name
        if name == LOGMEL:
            label += " (floor, no encoder)"
        elif name == STACKED:
            chosen = ", ".join(f"{t} k={best[t]['upstream'].rsplit('±', 1)[1]}" for t in tasks if best[t])
            label += f" (floor, k on dev: {chosen})"
        row = [label] + [_fmt(get(t, name, m), metric[t]) for t in tasks for m in modes]
        lines.append("| " + " | ".join(row) + " |")
    if stacked:
        lines += ["", "Stacked-context candidates (dev / test):", "",
                  "| frames each side | " + " | ".join(tasks) + " |", "|---:|" + "---:|" * len(tasks)]
        for name in stacked:
            vals = []
            for t in tasks:
                c = next((c for c in cells if c["task"] == t and c["upstream"] == name), None)
                vals.append("—" if c is None else f"{_fmt(float(c['best_dev'][c['metric']]), c['metric'])} / "
                                                  f"{_fmt(float(c['test'][c['metric']]), c['metric'])}")
            lines.append(f"| {name.rsplit('±', 1)[1]} | " + " | ".join(vals) + " |")
    lines += ["", "Convergence (best dev epoch / epochs run; a cell whose best epoch is its last had not "
              "plateaued):", ""]
    for c in cells:
        last = c["best_epoch"] >= c["epochs_run"]
        lines.append(f"- {c['task']} / {c['upstream']} / {MODE_LABEL.get(c['mode'], c['mode'])}: "
                      f"{c['best_epoch']} / {c['epochs_run']}" + (" — **best epoch is the last**" if last else ""))
    lines += ["", f"Total time: {seconds / 60:.1f} min (cells reused from an earlier run count as 0)."]
    return "\n".join(lines) + "\n"


def _plots(cells: list[dict[str, Any]], out: Path, tasks: Sequence[str], metric: Mapping[str, str]) -> None:
    for task in tasks:
        ws = {c["upstream"]: c["layer_weights"] for c in cells
              if c["task"] == task and c["mode"] == "weighted-sum" and len(c["layer_weights"]) > 1}
        if ws:
            plot_layer_weights(ws, out / f"layer_weights_{task}.png", title=f"{task}: weighted-sum layer weights")
        curves = {}
        for c in cells:
            if c["task"] == task and c["history"]:
                key = f"dev_{c['metric']}"
                curves[f"{c['upstream']} {c['mode']}"] = ([h["epoch"] for h in c["history"]],
                                                          [h.get(key, float("nan")) for h in c["history"]])
        plot_learning_curves(curves, out / f"curves_{task}.png", metric[task], title=f"{task}: dev curves")
