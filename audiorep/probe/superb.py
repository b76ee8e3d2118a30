"""The SUPERB plan runner: PR, SID and ER on one frozen upstream, with a learning-rate sweep and seeds.

One call of :func:`run_superb` (what ``audiorep superb`` runs):

1. runs the upstream once over every utterance of each corpus and keeps all hidden states in the feature
   cache (``OUT/cache``), shared by every task, learning rate, seed and fold;
2. trains one unit per (task, learning rate, seed[, ER fold]) with :func:`~audiorep.probe.run.run_downstream`:
   the Featurizer's weighted sum, the task's SUPERB head, the task's preset (:data:`PRESETS`), dev every
   ``eval_every`` steps, the best dev weights kept; test is not read;
3. per task, dev picks the learning rate (mean best dev score over seeds and folds); then, for that rate
   only, each unit's best dev weights are evaluated on test, once;
4. writes ``OUT/superb.json`` and ``OUT/superb.md``.

Resume: a finished unit (its ``results.json``) is never rerun; a unit cut mid-way is deleted and restarted
from step 0 (units are short; the Trainer's own resume restarts a pass's batch order, so a restarted unit is
the one that reproduces). ``OUT`` must be new, empty, or a folder this runner wrote (``superb-run.json``)
with the same settings.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.corpus import Corpus, get_corpus
from ..data.manifest import Utterance, seeded_subset
from ..data.superb import er_folds
from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from ..models.featurizer import Featurizer
from ..version import __version__
from .run import DownstreamConfig, build_cache, run_downstream
from .tasks import TASKS
from .tasks.er import ER_LABELS, er_label_key

log = logging.getLogger(__name__)

SUPERB_TASKS = ("pr", "sid", "er")
MARKER = "superb-run.json"  # written first into OUT: marks a folder this runner owns (resume, never foreign files)


@dataclass(frozen=True)
class SuperbPreset:
    """One task's SUPERB settings (s3prl's downstream config) and this runner's sweep grids."""

    task: str
    lr: float  # s3prl's published learning rate (Adam, constant)
    max_steps: int  # s3prl's total_steps (optimiser steps)
    batch_size: int  # s3prl's train batch size (utterances)
    grad_accum: int  # s3prl's gradient_accumulate_steps: effective batch = batch_size x grad_accum
    eval_every: int  # s3prl's eval_step: dev evaluations pick the best step
    # padded audio per batch, a memory cap that s3prl does not have (its batches are counted only); set so
    # that s3prl's count of its corpus's utterances fits
    batch_seconds: float
    lr_grid: tuple[float, ...]  # the full sweep (dev picks); s3prl's rate is in it
    # --quick: a short sweep, one seed. PR keeps s3prl's 1e-2 alone: it beat 1e-3 on dev for every upstream
    # measured on the bundled corpus, and a PR unit is the longest of the plan
    quick_lr_grid: tuple[float, ...]
    # the bundled corpus is ~1 % of a real one: s3prl's step counts would run hundreds of passes over it, so it
    # gets a step cap, denser dev evaluations and early stopping (a unit ends once dev has stalled)
    synth_steps: int  # optimiser steps per unit at most, bundled corpus
    synth_eval_every: int  # steps between dev evaluations, bundled corpus
    synth_patience: int  # dev evaluations without a better score before a unit stops, bundled corpus
    project_dim: int = 256  # s3prl's projector width (the superb-* heads' default)
    grad_clip: float = 1.0  # s3prl's gradient_clipping

    def __post_init__(self) -> None:
        for name in ("lr", "batch_seconds", "grad_clip"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"SUPERB preset {self.task!r}: {name} must be a positive finite number, got {v!r}")
        for name in ("max_steps", "batch_size", "grad_accum", "eval_every", "synth_steps", "synth_eval_every",
                     "synth_patience", "project_dim"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ConfigError(f"SUPERB preset {self.task!r}: {name} must be an integer >= 1, got {v!r}")
        for grid in (self.lr_grid, self.quick_lr_grid):
            check_lrs(grid, f"SUPERB preset {self.task!r}")


def check_lrs(lrs: Sequence[float], where: str) -> None:
    """ConfigError unless ``lrs`` is a non-empty list of distinct positive finite learning rates."""
    if not lrs or any(not (isinstance(x, (int, float)) and math.isfinite(x) and 0 < x < 10) for x in lrs):
        raise ConfigError(f"{where}: learning rates must be finite numbers in (0, 10), got {list(lrs)}")
    if len(set(lrs)) != len(lrs):
        raise ConfigError(f"{where}: learning rates repeat: {list(lrs)}")


def pr_preset() -> SuperbPreset:
    """PR (ctc/libriphone.yaml): Adam 1e-2, 100k steps, 16 x 2."""
    return SuperbPreset("pr", lr=1e-2, max_steps=100_000, batch_size=16, grad_accum=2, eval_every=1000,
                        batch_seconds=16 * 35.0, lr_grid=(1e-1, 1e-2, 1e-3, 1e-4), quick_lr_grid=(1e-2,),
                        synth_steps=3000, synth_eval_every=50, synth_patience=10)


def sid_preset() -> SuperbPreset:
    """SID (voxceleb1/config.yaml): Adam 1e-4, 200k steps, 8 x 4, crops of 8 s."""
    return SuperbPreset("sid", lr=1e-4, max_steps=200_000, batch_size=8, grad_accum=4, eval_every=5000,
                        batch_seconds=8 * 8.0, lr_grid=(1e-2, 1e-3, 1e-4, 1e-5), quick_lr_grid=(1e-2, 1e-3),
                        synth_steps=3000, synth_eval_every=50, synth_patience=10)


def er_preset() -> SuperbPreset:
    """ER (emotion/config.yaml): Adam 1e-4, 30k steps, 4 x 8, per fold."""
    return SuperbPreset("er", lr=1e-4, max_steps=30_000, batch_size=4, grad_accum=8, eval_every=1000,
                        batch_seconds=4 * 35.0, lr_grid=(1e-2, 1e-3, 1e-4, 1e-5), quick_lr_grid=(1e-2, 1e-3),
                        synth_steps=1500, synth_eval_every=25, synth_patience=10)


PRESETS = {"pr": pr_preset(), "sid": sid_preset(), "er": er_preset()}


@dataclass
class SuperbConfig:
    """One ``audiorep superb`` run."""

    upstream: str  # registered name, model folder, checkpoint, or logmel (= FBANK here: no per-utterance CMVN)
    out: str  # the run folder
    tasks: list[str] = field(default_factory=lambda: list(SUPERB_TASKS))
    data: str = "synth"  # "synth", or "corpora" with the roots below
    librispeech: str | None = None  # PR corpus folder (manifests train/dev/test with labels["phones"])
    voxceleb1: str | None = None  # SID corpus folder (manifests train/dev/test)
    iemocap: str | None = None  # ER corpus folder (one manifest in SUPERB's order, labels emotion + session)
    quick: bool = False  # the presets' short learning-rate grids, one seed
    seeds: int | None = None  # seeds per learning rate; None = 1 with quick, 3 otherwise
    lrs: list[float] | None = None  # one grid for every task instead of the presets' (tests, custom sweeps)
    steps: int | None = None  # optimiser steps per unit instead of the preset's (tests)
    max_utts: int | None = None  # seeded subset of every split (tests)
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        bad = [t for t in self.tasks if t not in PRESETS]
        if bad or not self.tasks:
            raise ConfigError(f"unknown SUPERB task {bad[0] if bad else '(none)'!r}; choose from {', '.join(SUPERB_TASKS)}")
        if len(set(self.tasks)) != len(self.tasks):
            raise ConfigError(f"--tasks repeats a task: {self.tasks}")
        if self.data not in ("synth", "corpora"):
            raise ConfigError(f"data must be 'synth' or 'corpora', got {self.data!r}")
        if self.seeds is not None and not 1 <= self.seeds <= 100:
            raise ConfigError(f"--seeds must be in 1..100, got {self.seeds}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be >= 1, got {self.steps}")
        if self.max_utts is not None and self.max_utts < 2:
            raise ConfigError(f"--max-utts must be >= 2, got {self.max_utts}")
        if self.lrs is not None:
            check_lrs(self.lrs, "--lrs")

    @property
    def n_seeds(self) -> int:
        return self.seeds if self.seeds is not None else (1 if self.quick else 3)

    def grid(self, task: str) -> tuple[float, ...]:
        p = PRESETS[task]
        return tuple(self.lrs) if self.lrs is not None else (p.quick_lr_grid if self.quick else p.lr_grid)

    def budget(self, task: str) -> tuple[int, int, int | None]:
        """(steps, eval_every, patience) of each unit of ``task``: s3prl's on real corpora (no early stop), the
        bundled corpus's cap with early stopping on ``--data synth``; ``--steps`` overrides both (tests)."""
        p = PRESETS[task]
        if self.data == "synth":
            steps, every, patience = p.synth_steps, p.synth_eval_every, p.synth_patience
        else:
            steps, every, patience = p.max_steps, p.eval_every, None
        if self.steps is not None:
            steps, every = self.steps, max(1, self.steps // 4)
        return steps, min(every, steps), patience

    def identity(self) -> dict[str, Any]:
        """What must match for a resume: everything but the task list and the device."""
        d = asdict(self)
        for k in ("tasks", "device", "progress", "out"):
            d.pop(k)
        return d


# ---------------------------------------------------------------- data

def _corpus_for(cfg: SuperbConfig, task: str) -> Corpus:
    if cfg.data == "synth":
        return get_corpus("synth")
    flag = {"pr": "librispeech", "sid": "voxceleb1", "er": "iemocap"}[task]
    root = getattr(cfg, flag)
    if root is None:
        raise ConfigError(f"task {task!r} needs --{flag} DIR (a folder made by audiorep data prepare) or --data synth")
    return get_corpus(root)


def task_folds(cfg: SuperbConfig, task: str) -> tuple[Corpus, list[dict[str, list[Utterance]]]]:
    """The corpus and the (train, dev, test) lists of one task: one for PR and SID, five folds for ER."""
    corpus = _corpus_for(cfg, task)
    if task != "er":
        splits = {role: seeded_subset(corpus.manifest(role), cfg.max_utts, keep_order=True)
                  for role in ("train", "dev", "test")}
        if task == "sid" and cfg.max_utts is not None:  # a subset keeps dev/test speakers that train still has
            known = {u.speaker for u in splits["train"]}
            splits = {r: [u for u in us if u.speaker in known] if r != "train" else us for r, us in splits.items()}
        for role, utts in splits.items():
            if not utts:
                raise ConfigError(f"task {task!r}: split {role!r} of corpus {corpus.name!r} is empty")
        return corpus, [splits]
    utts = corpus.utterances()
    if cfg.max_utts is not None:  # the same share of every session, so that no fold loses its test set
        keep = {id(u) for s in sorted({u.labels.get("session") for u in utts}, key=str)
                for u in seeded_subset([u for u in utts if u.labels.get("session") == s], max(1, cfg.max_utts // 5),
                                keep_order=True)}
        utts = [u for u in utts if id(u) in keep]
    if not utts:
        raise ConfigError(f"task 'er': corpus {corpus.name!r} has no utterances")
    key = er_label_key(utts)
    folds = er_folds(utts, label_key=key, classes=ER_LABELS[key])
    for i, fold in enumerate(folds, 1):
        for role, us in fold.items():
            if not us:
                raise ConfigError(f"task 'er': fold {i} has an empty {role} list ({len(utts)} utterances in all); "
                                  "use more utterances")
    return corpus, folds


# ---------------------------------------------------------------- upstream and features

def load_superb_upstream(name: str, device: torch.device) -> tuple[nn.Module, str]:
    """The upstream and how the report names it. ``logmel`` is SUPERB's FBANK baseline here: log-mel without
    per-utterance CMVN, since the mean over time of CMVN frames is zero, so a projector + mean pooling head
    on them sees one vector for every utterance (chance by construction). ``logmel-cmvn`` is that CMVN
    log-mel, the input of audiorep's encoders: what an utterance-level task keeps before any encoder."""
    from ..features import FeatureConfig
    from ..models.logmel import LogMelUpstream, parse_logmel_name
    from ..weights.loading import load_upstream

    if name == "logmel-cmvn":  # a diagnostic floor: exactly what audiorep's encoders take as input
        up = LogMelUpstream(FeatureConfig(cmvn=True))
        return up.to(device), f"{name} (log-mel with per-utterance CMVN: the encoders' input)"
    context = parse_logmel_name(name)
    if context is not None:
        up = LogMelUpstream(FeatureConfig(cmvn=False), context=context)
        return up.to(device), f"{name} (FBANK: log-mel, no per-utterance CMVN)"
    return load_upstream(name, device=device), name


def cache_states(up: nn.Module, utts: list[Utterance], cache_dir: Path, desc: str, device: torch.device,
                 progress: bool) -> dict[str, torch.Tensor]:
    """Every hidden state of every utterance, {id: (K, T, H) fp16}, from the feature cache or computed once."""
    featurizer = Featurizer(up, "weighted-sum")
    cfg = DownstreamConfig(upstream="given", feature_cache=str(cache_dir), progress=progress)
    states = build_cache(featurizer, utts, cfg, device, desc)
    return {u.id: s for u, s in zip(utts, states)}


# ---------------------------------------------------------------- the plan

@dataclass
class Unit:
    task: str
    lr: float
    seed: int
    fold: int | None  # ER: 1..5

    @property
    def name(self) -> str:
        return f"{self.task}/lr{self.lr:g}-seed{self.seed}" + (f"-fold{self.fold}" if self.fold else "")


def plan(cfg: SuperbConfig, n_folds: dict[str, int]) -> list[Unit]:
    """Every training unit, task by task, learning rate by learning rate."""
    units = []
    for task in cfg.tasks:
        for lr in cfg.grid(task):
            for seed in range(cfg.n_seeds):
                for fold in (range(1, n_folds[task] + 1) if task == "er" else [None]):
                    units.append(Unit(task, lr, seed, fold))
    return units


def _unit_config(cfg: SuperbConfig, unit: Unit, corpus: Corpus, out: Path, n_train: int) -> DownstreamConfig:
    p = PRESETS[unit.task]
    steps, every, patience = cfg.budget(unit.task)
    # a training split smaller than one accumulated step (tiny subsets) accumulates what one pass holds
    accum = max(1, min(p.grad_accum, math.ceil(n_train / p.batch_size)))
    return DownstreamConfig(
        task=unit.task, upstream=cfg.upstream, mode="weighted-sum", data=str(corpus.root), out_dir=str(out),
        max_steps=steps, eval_every=every, grad_accum=accum, batch_size=p.batch_size,
        batch_seconds=p.batch_seconds, lr=unit.lr, grad_clip=p.grad_clip, weight_decay=0.0, seed=unit.seed,
        patience=patience, plateau_patience=None, device=cfg.device, progress=False, plots=False)


def _claim_out(cfg: SuperbConfig) -> Path:
    """Create or reopen OUT; ConfigError for a folder with foreign files or another run's settings."""
    out = Path(cfg.out)
    marker = out / MARKER
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not marker.is_file():
            raise ConfigError(f"--out {out}: holds files that audiorep superb did not write; choose a new or empty folder")
        try:
            old = json.loads(marker.read_text(encoding="utf-8"))["identity"]
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(f"{marker}: unreadable ({exc}); choose a new --out") from None
        if old != json.loads(json.dumps(cfg.identity())):
            diff = sorted(k for k in set(old) | set(cfg.identity()) if old.get(k) != cfg.identity().get(k))
            raise ConfigError(f"--out {out}: a superb run with other settings ({', '.join(diff)}); resume it with "
                              "the same flags or choose a new folder")
        return out
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(marker, json.dumps({"kind": "audiorep-superb", "version": __version__,
                                           "identity": cfg.identity()}, indent=2).encode())
    return out


def _read_result(folder: Path) -> dict[str, Any] | None:
    path = folder / "results.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _run_unit(cfg: SuperbConfig, unit: Unit, corpus: Corpus, splits: dict[str, list[Utterance]], up: nn.Module,
              states: dict[str, torch.Tensor], folder: Path, test: bool) -> dict[str, Any]:
    """Train a unit (or reuse its finished run); with ``test`` also read its test score once."""
    done = _read_result(folder)
    if done is not None and (not test or done.get("test")):
        return done
    if done is None and folder.exists():
        shutil.rmtree(folder)  # cut mid-way: restart from step 0 (see the module doc)
    ucfg = _unit_config(cfg, unit, corpus, folder, len(splits["train"]))
    run_downstream(ucfg, resume=done is not None, upstream=up, splits=splits, states=states, test=test)
    res = _read_result(folder)
    assert res is not None
    return res


def _mean_std(xs: list[float]) -> tuple[float, float]:
    m = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else 0.0
    return m, sd


def git_commit() -> str | None:
    """The source tree's git commit, when audiorep runs from a checkout."""
    try:
        r = subprocess.run(["git", "-C", str(Path(__file__).resolve().parent), "rev-parse", "HEAD"],
                           capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout.strip() or None if r.returncode == 0 else None


def run_superb(cfg: SuperbConfig) -> dict[str, Any]:
    """Run (or resume) the plan; returns what ``superb.json`` holds."""
    import time

    from ..train.distributed import resolve_device

    t0 = time.perf_counter()
    data = {t: task_folds(cfg, t) for t in cfg.tasks}  # every data error before anything heavy
    out = _claim_out(cfg)
    device = resolve_device(cfg.device)
    up, up_label = load_superb_upstream(cfg.upstream, device)
    up.eval()

    # features: once per corpus, all hidden states, shared by every unit
    states: dict[str, dict[str, torch.Tensor]] = {}
    for task, (corpus, folds) in data.items():
        if str(corpus.root) in states:
            continue
        union: dict[str, Utterance] = {}
        for t2, (c2, f2) in data.items():
            if c2.root == corpus.root:
                for fold in f2:
                    for us in fold.values():
                        for u in us:
                            union.setdefault(u.id, u)
        states[str(corpus.root)] = cache_states(up, list(union.values()), out / "cache",
                                                f"superb-{Path(corpus.name).name}", device, cfg.progress)

    units = plan(cfg, {t: len(f) for t, (_, f) in data.items()})
    n_test = sum(cfg.n_seeds * len(data[t][1]) for t in cfg.tasks)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(units) + n_test, desc="superb", unit="run", dynamic_ncols=True, file=sys.stderr)
    trained: dict[str, dict[str, Any]] = {}
    try:
        for unit in units:
            if bar is not None:
                bar.set_postfix_str(unit.name)
            corpus, folds = data[unit.task]
            fold = folds[(unit.fold or 1) - 1]
            trained[unit.name] = _run_unit(cfg, unit, corpus, fold, up, states[str(corpus.root)],
                                           out / "units" / unit.name, test=False)
            if bar is not None:
                bar.update(1)
        report = {"upstream": up_label, "upstream_arg": cfg.upstream,
                  "data": cfg.data if cfg.data == "synth" else {k: getattr(cfg, k) for k in
                                                                ("librispeech", "voxceleb1", "iemocap")},
                  "quick": cfg.quick, "audiorep_version": __version__, "git_commit": git_commit(),
                  "device": str(device), "tasks": {}}
        for task in cfg.tasks:
            corpus, folds = data[task]
            primary = TASKS[task].primary
            lower = TASKS[task].select_mode == "min"
            mine = [u for u in units if u.task == task]
            dev_by_lr = {lr: _mean_std([trained[u.name]["best_dev"][primary] for u in mine if u.lr == lr])[0]
                         for lr in cfg.grid(task)}
            best_lr = (min if lower else max)(dev_by_lr, key=lambda lr: dev_by_lr[lr])
            per_seed: list[float] = []
            runs = []
            for seed in range(cfg.n_seeds):
                fold_scores = []
                for u in (u for u in mine if u.lr == best_lr and u.seed == seed):
                    res = _run_unit(cfg, u, corpus, folds[(u.fold or 1) - 1], up, states[str(corpus.root)],
                                    out / "units" / u.name, test=True)
                    if bar is not None:
                        bar.update(1)
                    fold_scores.append(res["test"][primary])
                    runs.append({"unit": u.name, "test": res["test"][primary], "best_dev": res["best_dev"][primary],
                                 "best_step": res["best_step"], "steps_run": res["steps_run"],
                                 "converged": res["best_step"] < res["steps_run"]})
                per_seed.append(sum(fold_scores) / len(fold_scores))  # ER: the mean over folds
            mean, std = _mean_std([100 * x for x in per_seed])
            steps, every, patience = cfg.budget(task)
            report["tasks"][task] = {
                "metric": "PER %" if task == "pr" else "accuracy %", "value": round(mean, 2), "std": round(std, 2),
                "lr": best_lr, "lr_grid": list(cfg.grid(task)), "dev_by_lr": {f"{k:g}": v for k, v in dev_by_lr.items()},
                "seeds": list(range(cfg.n_seeds)), "per_seed": [round(100 * x, 2) for x in per_seed],
                "folds": len(folds), "steps": steps, "eval_every": every, "patience": patience,
                "converged": all(r["converged"] for r in runs), "runs": runs,
                "corpus": corpus.name,
                "utterances": {k: len(v) for k, v in folds[0].items()} if task != "er" else sum(len(f["test"]) for f in folds),
            }
    finally:
        if bar is not None:
            bar.close()
    report["wall_seconds"] = round(time.perf_counter() - t0, 1)
    atomic_write_bytes(out / "superb.json", json.dumps(report, indent=2).encode())
    atomic_write_bytes(out / "superb.md", markdown_table(report).encode())
    return report


def markdown_table(report: dict[str, Any]) -> str:
    """``superb.md``: one row per task (value ± std over seeds, chosen lr, convergence)."""
    lines = [f"# SUPERB: {report['upstream']}", "",
             f"data: {report['data']}, quick: {report['quick']}, audiorep {report['audiorep_version']}"
             f" ({report['git_commit'] or 'no git commit'})", "",
             "| task | metric | value | ± std | lr | seeds | max steps | converged |",
             "|---|---|---|---|---|---|---|---|"]
    for task, r in report["tasks"].items():
        best = ", ".join(str(x["best_step"]) for x in r["runs"])
        mark = "yes" if r["converged"] else f"no (best steps {best})"
        lines.append(f"| {task} | {r['metric']} | {r['value']:.2f} | {r['std']:.2f} | {r['lr']:g} | "
                     f"{len(r['seeds'])} | {r['steps']} | {mark} |")
    return "\n".join(lines) + "\n"
