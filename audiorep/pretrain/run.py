"""Build a pretraining run from a :class:`PretrainConfig` and execute it (what ``audiorep pretrain`` calls)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..fileio import atomic_write_text
from ..locking import lock_run_folder
from ..ownership import check_output_dir
from ..train.checkpoint import CheckpointManager
from ..train.rng import seed_everything
from ..train.distributed import DistContext, barrier, init_distributed, shutdown
from ..train.loader import ResumableBatches
from ..train.metrics import plot_held_out, plot_loss_curve, read_metrics
from ..train.run_folder import prepare_run_folder
from ..train.trainer import StepLog, Trainer
from .config import PretrainConfig
from .masking import check_maskable
from .model import MaskedAcousticModel, PretrainTask

log = logging.getLogger(__name__)


@dataclass
class PretrainResult:
    """What a run leaves behind."""

    run_dir: Path
    final_dir: Path | None  # save_pretrained folder (None when the run stopped before max_steps)
    s3prl_checkpoint: Path | None  # s3prl-layout export of the final model
    step: int
    logs: list[StepLog] = field(default_factory=list)  # steps trained by this call
    first_loss: float | None = None  # loss at step 1 of the whole run (metrics.csv)
    last_loss: float | None = None  # mean of the last 5 logged rows (each a mean over its interval)
    loss_png: Path | None = None  # the loss-curve plot (None without matplotlib)


# Settings a resumed run may change: budget, cadence, where and how visibly it runs. Everything else
# (model, features, masking, optimiser, data, seed) belongs to the checkpoint being continued.
RESUME_MAY_CHANGE = ("name", "out_dir", "train.max_steps", "train.log_every", "train.ckpt_every",
                     "train.keep_last", "train.device", "train.progress", "train.eval_every", "train.compile",
                     "data.num_workers")


def manifest_cache_name(cfg: PretrainConfig) -> str:
    """The run folder's cached LibriSpeech manifest, named by what it was scanned from: a run started
    over on other data (or other subsets) never reads the old corpus's list."""
    import hashlib

    ident = {"root": str(Path(cfg.data.train).resolve()), "subsets": list(cfg.data.librispeech_subsets),
             "on_error": cfg.data.on_error}
    return f"train_manifest-{hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:12]}.jsonl"


def _is_librispeech_root(path: Path) -> bool:
    """A folder with no ``*.jsonl`` manifests is read as a LibriSpeech tree (corpus folders hold manifests)."""
    return path.is_dir() and not any(path.glob("*.jsonl"))


LIBRISPEECH_SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
                       "test-clean", "test-other")


def _librispeech_subsets(cfg: PretrainConfig, found: Any, src: str) -> list[str]:
    """The asked-for subsets present under the root. A name that is no LibriSpeech subset (a typo) is an error,
    and so is finding none of them: training on every subset there (test-clean included) is never meant."""
    if set(found) == {"all"}:
        return ["all"]  # data.train names one subset folder itself
    asked = list(cfg.data.librispeech_subsets)
    have = ", ".join(sorted(found)) or "none"
    typos = [s for s in asked if s not in LIBRISPEECH_SUBSETS]
    if typos:
        raise ConfigError(f"data.librispeech_subsets: {', '.join(map(repr, typos))} is no LibriSpeech subset "
                          f"(found under {src}: {have})")
    present = [s for s in asked if s in found]
    if not present:
        raise ConfigError(f"data.librispeech_subsets: none of {', '.join(asked) or '[]'} is under {src} "
                          f"(found: {have})")
    return present


def resolve_utterances(cfg: PretrainConfig, run_dir: Path | None = None, ctx: DistContext | None = None):
    """The training Utterances: a corpus (bundled name, folder of manifests, .jsonl) or a LibriSpeech root.

    A LibriSpeech tree is scanned once (file headers only) by rank 0 and cached as
    ``<run_dir>/train_manifest-<key>.jsonl`` (:func:`manifest_cache_name`); the other ranks and resumed runs
    read that file.
    """
    from .. import data as D

    src = cfg.data.train
    path = Path(src)
    if _is_librispeech_root(path):
        cache = (run_dir or Path(cfg.run_dir)) / manifest_cache_name(cfg)
        if ctx is None or ctx.is_main:
            if not cache.is_file():
                from ..data.readers import read_librispeech

                found = read_librispeech(path, on_error=cfg.data.on_error)
                utts = [u for s in _librispeech_subsets(cfg, found.splits, src) for u in found.splits[s]]
                if not utts:
                    raise ConfigError(f"data.train={src}: no LibriSpeech utterances found")
                cache.parent.mkdir(parents=True, exist_ok=True)
                D.write_manifest(utts, cache)
        if ctx is not None:
            barrier(ctx)
        utts = D.read_manifest(cache)
    elif path.is_file() and path.suffix == ".jsonl":
        utts = D.read_manifest(path)  # the manifest named is the training data, whatever the file is called
    else:
        utts = D.get_corpus(src).manifest(cfg.data.split)
    min_samples = int(cfg.data.min_seconds * cfg.features.sample_rate)
    kept = [u for u in utts if round(u.num_samples * cfg.features.sample_rate / u.sample_rate) >= min_samples]
    if not kept:
        raise ConfigError(f"data.train={src}: no utterance of at least {cfg.data.min_seconds} s")
    longest = max(round(u.num_samples * cfg.features.sample_rate / u.sample_rate) for u in kept)
    check_maskable(cfg.masking, int(cfg.features.num_frames(longest)), f"the longest utterance of data.train={src}")
    return kept


def build_batches(cfg: PretrainConfig, ctx: DistContext, run_dir: Path | None = None) -> ResumableBatches:
    """Dataset (random crops to ``max_seconds``) + length-bucketed, rank-split batch sampler."""
    from ..data import AudioDataset, LengthBucketBatchSampler, collate_waveforms

    sr = cfg.features.sample_rate
    max_samples = int(cfg.data.max_seconds * sr) if cfg.data.max_seconds else None
    ds = AudioDataset(resolve_utterances(cfg, run_dir, ctx), sr, max_samples=max_samples, seed=cfg.train.seed,
                      on_error=cfg.data.on_error)
    sampler = LengthBucketBatchSampler(
        ds.lengths, cfg.data.batch_size,
        max_batch_samples=int(cfg.data.max_batch_seconds * sr) if cfg.data.max_batch_seconds else None,
        seed=cfg.train.seed, num_replicas=ctx.world_size, rank=ctx.rank,
    )
    return ResumableBatches(ds, sampler, collate_waveforms, num_workers=cfg.data.num_workers,
                            pin_memory=ctx.device.type == "cuda", seed=cfg.train.seed)


def build_model(cfg: PretrainConfig) -> MaskedAcousticModel:
    encoder = cfg.encoder_class(cfg.encoder_config, cfg.features)
    return MaskedAcousticModel(encoder, cfg.masking, cfg.loss, cfg.target_features)


def training_summary(cfg: PretrainConfig, step: int, utterances: int | None = None, world_size: int = 1,
                     wall_seconds: float | None = None, resumed_at: int = 0) -> dict[str, Any]:
    """What the model card's Training section says about this run: data, objective, optimiser, steps."""
    m = cfg.masking
    altered = [f"time spans of {m.span} frames over {m.time_proportion:.0%} of frames"]
    if m.freq_proportion > 0:
        altered.append(f"one frequency band of up to {m.freq_proportion:.0%} of bins")
    if m.noise_proportion > 0:
        altered.append(f"Gaussian noise (std {m.noise_std:g}) on {m.noise_proportion:.0%} of utterances")
    out: dict[str, Any] = {"data": f"{cfg.data.train} (split {cfg.data.split})"}
    if utterances is not None:
        out["utterances"] = utterances
    out.update({
        "objective": f"masked acoustic modelling, {cfg.loss.upper()} loss on altered frames: " + "; ".join(altered),
        "steps": step,
        "batch size": (f"{cfg.data.batch_size} utterances per micro-batch x {cfg.train.grad_accum} accumulation "
                       f"x {world_size} process(es)"),
        "optimiser": f"AdamW, peak lr {cfg.optim.lr:g}",
    })
    if wall_seconds is not None:
        # a resumed run knows only its last call's time: say so instead of passing it off as the whole run
        took = f"{wall_seconds:.0f} s" if wall_seconds < 600 else f"{wall_seconds / 60:.0f} min"
        out["wall time"] = took + (f" (steps {resumed_at + 1}-{step} only: resumed)" if resumed_at else "")
    return out


def export_final(model: MaskedAcousticModel, run_dir: Path, step: int, cfg: PretrainConfig,
                 training: dict[str, Any] | None = None) -> tuple[Path, Path | None]:
    """``final/`` via save_pretrained (head kept as an extra, ``training`` in the card) and
    ``s3prl/states-STEP.ckpt``."""
    from ..weights.s3prl import export_s3prl_checkpoint

    from ..ownership import claim_new

    final = model.encoder.save_pretrained(run_dir / "final", extra={"head": model.head}, training=training)
    s3 = None
    if model.encoder.s3prl_exportable():
        s3 = run_dir / "s3prl" / f"states-{step}.ckpt"
        claim_new(s3.parent, [s3.name], replace=True)
        m = cfg.masking
        export_s3prl_checkpoint(model.encoder, s3, head=model.head, step=step, task={
            "loss": cfg.loss.upper() if cfg.loss == "mse" else "L1", "mask_proportion": m.time_proportion,
            "mask_consecutive_min": m.span, "mask_consecutive_max": m.span, "mask_allow_overlap": True,
            "mask_frequency": m.freq_proportion, "noise_proportion": m.noise_proportion,
        })
    return final, s3


def held_out_utterances(cfg: PretrainConfig):
    """The first ``data.eval_max_utts`` utterances of ``data.eval_split`` of the training corpus, or None when
    there is none (a LibriSpeech root, a manifest outside a corpus folder, no such split)."""
    from .. import data as D

    split = cfg.data.eval_split
    path = Path(cfg.data.train)
    if path.suffix == ".jsonl":
        path = path.parent  # a manifest's sibling manifests are its corpus's other splits
    if not split or _is_librispeech_root(path):
        return None  # a LibriSpeech root: no held-out split is named
    try:
        corpus = D.get_corpus(path if path.is_dir() else cfg.data.train)
    except ConfigError:  # not a corpus: nothing to check against
        return None
    if split not in corpus.splits:
        log.warning("held-out check skipped: corpus %s has no split %r (has %s)", cfg.data.train, split,
                    ", ".join(corpus.splits))
        return None
    return corpus.manifest(split)[: cfg.data.eval_max_utts]


def held_out_reporter(model: MaskedAcousticModel, cfg: PretrainConfig):
    """A callable giving the reconstruction report on the held-out utterances (same inputs every call), or None."""
    from .evaluate import reconstruction_report

    utts = held_out_utterances(cfg)
    if not utts:
        return None
    paths, ids = [u.path for u in utts], [u.id for u in utts]
    return lambda: reconstruction_report(model, paths, ids, cfg.masking, seed=cfg.train.seed,
                                         max_seconds=cfg.data.max_seconds)


def held_out_check(model: MaskedAcousticModel, cfg: PretrainConfig, run_dir: Path) -> dict | None:
    """The reconstruction report on the held-out utterances, written to ``eval.json`` and logged; the
    held-out curve (``heldout.csv``, when ``train.eval_every`` wrote one) is plotted to ``heldout.png``."""
    report = held_out_reporter(model, cfg)
    if report is None:
        return None
    rep = report()
    rep["split"] = cfg.data.eval_split
    atomic_write_text(run_dir / "eval.json", json.dumps(rep, indent=2) + "\n")
    near = rep["by_distance"].get("1", {})
    log.info("held-out %s L1 on hidden frames: model %.4f | predict zero %.4f | interpolate neighbours %s"
             " | next to a visible frame: model %.4f vs interpolation %s", rep["split"], rep["model"], rep["zero"],
             f"{rep['interpolation']:.4f}" if "interpolation" in rep else "n/a", near.get("model", float("nan")),
             f"{near['interpolation']:.4f}" if "interpolation" in near else "n/a")
    if (run_dir / "heldout.csv").is_file():
        plot_held_out(run_dir / "heldout.csv", run_dir / "heldout.png", title=f"{cfg.name}: held-out {rep['split']}")
    return rep


def loss_summary(run_dir: Path, k: int = 5) -> tuple[float | None, float | None]:
    """(loss at the first logged step — step 1, the untrained model —, mean of the last ``k`` logged rows)."""
    path = run_dir / "metrics.csv"
    if not path.is_file():
        return None, None
    vals = [float(r["loss"]) for r in read_metrics(path) if r.get("loss")]
    if not vals:
        return None, None
    k = max(1, min(k, len(vals) - 1))
    return vals[0], sum(vals[-k:]) / k


def pretrain(cfg: PretrainConfig, resume: bool = False, overwrite: bool = False,
             step_budget: int | None = None, batches: ResumableBatches | None = None) -> PretrainResult:
    """Run (or continue) pretraining; under torchrun every rank calls this.

    ``resume`` continues from the newest checkpoint in the run folder. Without it, a folder that already
    holds checkpoints is refused (``overwrite`` deletes them) so two runs never interleave.
    ``batches`` replaces the configured data (tests, custom pipelines).
    """
    ctx = init_distributed(cfg.train.device)
    lock = None
    try:
        run_dir = Path(cfg.run_dir)
        check_output_dir(run_dir)  # a file in the way or a name too long: refused before the lock and the work
        ckpts = CheckpointManager(run_dir / "checkpoints")
        if ctx.is_main:
            # Before looking at what the folder holds: two runs started together both see it empty.
            lock = lock_run_folder(run_dir)
        barrier(ctx)
        from ..models.base import CONFIG_NAME, WEIGHTS_NAME

        prepare_run_folder(run_dir, ckpts, ctx, resume=resume, overwrite=overwrite,
                           outputs=("config.yaml", "metrics.csv", "loss.png", "heldout.csv", "heldout.png",
                                    "eval.json", manifest_cache_name(cfg)),
                           temp_folders=("final", "s3prl"),
                           folder_files={"final": (CONFIG_NAME, WEIGHTS_NAME),
                                         "s3prl": (f"states-{cfg.train.max_steps}.ckpt",)},
                           config_file="config.yaml", config=cfg.to_dict(), may_change=RESUME_MAY_CHANGE)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            text = yaml.safe_dump(cfg.to_dict(), sort_keys=False)
            atomic_write_text(run_dir / "config.yaml", text)
        barrier(ctx)
        seed_everything(cfg.train.seed)  # identical init on every rank (DDP also broadcasts rank 0's)
        model = build_model(cfg)
        seed_everything(cfg.train.seed + ctx.rank)  # then distinct dropout streams per rank
        batches = batches or build_batches(cfg, ctx, run_dir)
        task = PretrainTask(model, cfg.train.seed,
                            held_out_reporter(model, cfg) if cfg.train.eval_every > 0 and ctx.is_main else None)
        trainer = Trainer(model, task, batches, cfg.train, cfg.optim, run_dir, ctx, config_dict=cfg.to_dict())
        if resume and trainer.resume():
            if ctx.is_main:
                log.info("resumed %s at step %d", run_dir, trainer.step)
        start_step, started = trainer.step, time.monotonic()
        logs = trainer.fit(step_budget=step_budget)
        final = s3 = png = None
        if trainer.step >= cfg.train.max_steps and ctx.is_main:
            dataset = getattr(batches, "dataset", None)
            training = training_summary(cfg, trainer.step, len(dataset) if dataset is not None else None,
                                        ctx.world_size, time.monotonic() - started, resumed_at=start_step)
            final, s3 = export_final(model, run_dir, trainer.step, cfg, training)
            held_out_check(model, cfg, run_dir)
            png = plot_loss_curve(run_dir / "metrics.csv", run_dir / "loss.png", title=f"{cfg.name}: masked L1")
        barrier(ctx)
        first, last = loss_summary(run_dir) if ctx.is_main else (None, None)
        return PretrainResult(run_dir, final, s3, trainer.step, logs, first, last, png)
    finally:
        if lock is not None:
            lock.release()
        shutdown(ctx)
