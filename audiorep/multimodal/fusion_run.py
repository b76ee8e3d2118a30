"""Train / evaluate the fusion heads: :func:`run` (one head, several seeds, mean ± std) and :func:`train_one`.

The loop is :class:`audiorep.train.Trainer` with :class:`FusionTask`: early stopping on a dev metric
(``select_metric``, MAE by default); the best dev weights are evaluated on test once. Metrics come from
:mod:`audiorep.scoring` (MMSA's definitions); nothing is re-implemented here.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..errors import BusyError, ConfigError
from ..fileio import atomic_write_bytes
from ..ownership import claim_new
from ..config import load
from ..train.distributed import DistContext
from ..train.optim import OptimConfig, build_optimizer
from ..train.task import TrainTask
from ..train.trainer import TrainConfig, Trainer
from ..scoring import check_select_metric, regression_metrics
from ..validate import GRAD_CLIP, LR, SEED, WEIGHT_DECAY, check_int, check_ranges, ints, reals
from .common import FusionHead, FusionOutput, TextEncoder
from .data import FusionSplit
from .heads import HEADS

log = logging.getLogger(__name__)


@dataclass
class FusionConfig:
    """One fusion experiment (YAML + ``key=value`` overrides)."""

    head: str = "selfmm"  # a registered fusion head (multimodal/heads/: text, selfmm, dmd, deepmlf, ...)
    # data: an MMSA pickle, or a corpus through an upstream
    mmsa: str | None = None  # path to an MMSA pickle; None = use `data` + `upstream`
    use_vision: bool = True  # MMSA only: False drops the vision stream (the bundled corpus has none)
    data: str = "synth"  # corpus name or folder (manifests with `text` and labels[label_key])
    label_key: str = "sentiment"
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    upstream: str = "logmel"  # audiorep upstream (name / folder / s3prl ckpt) or "logmel"
    mode: str = "last"  # frozen featurizer mode: last | layer | weighted-sum (weights learned on the cache)
    layer: int | None = None  # for mode=layer
    audio_pool: int = 4  # average this many upstream frames (10 ms -> 40 ms): LSTM/attention cost
    feature_cache: str | None = "exp/fusion/features"  # where upstream features are cached; None = memory only
    max_utts: int | None = None  # seeded subset of each split (quick runs; data.manifest.seeded_subset, seed 0)
    metrics: str = "mosi"  # metric family: mosi ([-3, 3]) or sims
    # text side
    text_model: str = "teasel-small"  # encoder folder, or "teasel-small" (the TEASEL package's cached small RoBERTa)
    text_features: bool = False  # MMSA: use the pickle's BERT features instead of a text model
    # heads that need a decoder LM (DeepMLF): a GPT-2-style folder, or "small-gpt2" (trained here on transcripts)
    decoder_lm: str = "small-gpt2"
    max_tokens: int = 64
    # head settings (fields of the head's registered config class: SelfMMConfig, DMDConfig, DeepMLFConfig, ...)
    head_args: dict[str, Any] = field(default_factory=dict)
    # optimisation
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs: int = 10
    patience: int = 4  # early stop after this many epochs without a better dev score
    # dev metric for early stopping and the best checkpoint. MAE is MMSA's choice; on weak-signal data it
    # favours near-constant predictions (the train median already scores well), so Corr is offered too.
    select_metric: str = "MAE"
    batch_size: int = 16
    lr: float = 1e-3  # heads, sub-nets, fusion parts
    text_lr: float = 5e-5  # fine-tuned text encoder (Self-MM: BERT 5e-5)
    weight_decay: float = 0.0
    # "constant" keeps every rate fixed, as MMSA trains these heads. "cosine" warms up linearly over
    # warmup_ratio of the steps, then decays (the TEASEL fine-tuning schedule): a from-scratch text encoder
    # at 5e-4 learns polarity slowly and seed-dependently at constant rates.
    lr_schedule: str = "constant"
    warmup_ratio: float = 0.1  # for lr_schedule=cosine: fraction of all steps (epochs x batches) warming up
    grad_clip: float = 5.0  # max grad norm; <= 0 disables
    device: str = "cpu"
    out_dir: str = "exp/fusion"

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ConfigError(f"head must be one of {', '.join(HEADS)}; got {self.head!r}")
        check_ranges(self, "", {
            "layer": ints(-10**4, 10**4, "(a hidden-state index; negative counts from the last)", optional=True), "audio_pool": ints(1, 10**4, "frames"),
            "max_utts": ints(1, 10**9, "utterances", optional=True), "max_tokens": ints(1, 10**6, "tokens"),
            "epochs": ints(1, 10**6, "epochs"), "patience": ints(1, 10**6, "epochs"),
            "batch_size": ints(1, 10**6, "utterances"), "lr": LR, "text_lr": LR, "weight_decay": WEIGHT_DECAY,
            "warmup_ratio": reals(0.0, 1.0, "(a fraction of the steps)", high_open=True), "grad_clip": GRAD_CLIP,
        })
        if not self.seeds:
            raise ConfigError("seeds is empty: give at least one seed, e.g. seeds=[0]")
        for i, seed in enumerate(self.seeds):
            check_int("", f"seeds[{i}]", seed, int(SEED.low), int(SEED.high), unit=SEED.unit)
        HEADS[self.head].check_args(self.head_args)  # unknown keys fail here, not after the features are cached
        check_select_metric(self.select_metric)
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule must be 'constant' or 'cosine'; got {self.lr_schedule!r}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must lie in [0, 1); got {self.warmup_ratio}")
        if self.max_utts is not None and self.max_utts < 1:
            raise ConfigError(f"max_utts must be >= 1 or null, got {self.max_utts}")


def load_fusion_config(path: str | None = None, overrides: Sequence[str] = ()) -> FusionConfig:
    """YAML file + ``key=value`` overrides (``head_args.NAME=V`` for a head setting) -> FusionConfig."""
    return load(FusionConfig, path, overrides)


def build_head(name: str, audio_dim: int, vision_dim: int | None, text_encoder: TextEncoder | None = None,
               decoder: tuple[Any, Any] | None = None, head_args: dict[str, Any] | None = None) -> FusionHead:
    """A registered head (:data:`HEADS`) by name, given the parts it needs: ``text_encoder`` ("text"),
    ``decoder`` = (tokenizer, GPT-2-style LM) ("decoder_lm")."""
    if name not in HEADS:
        raise ConfigError(f"unknown head {name!r}; choose from {', '.join(HEADS)}")
    spec = HEADS[name]
    parts: dict[str, Any] = {}
    if "text" in spec.needs:
        if text_encoder is None:
            raise ConfigError(f"head {name!r} needs a text encoder")
        parts["text_encoder"] = text_encoder
    if "decoder_lm" in spec.needs:
        if decoder is None:
            raise ConfigError(f"head {name!r} needs a decoder LM and its tokenizer")
        parts["tokenizer"], parts["lm"] = decoder
    cfg = spec.make_config({"audio_dim": audio_dim, "vision_dim": vision_dim}, dict(head_args or {}))
    return spec.head(cfg, **parts)


def _forward(model: FusionHead, b: dict, featurizer, device, with_labels: bool):
    audio = b["audio"].to(device)
    if audio.dim() == 4:  # (K, B, T, H) cached hidden states -> learned weighted sum
        audio = featurizer.combine(audio)  # (B, T, H)
    text = model.batch_text(b["raw_text"], b["text_features"])
    text = {k: v.to(device) for k, v in text.items()}
    vis = b["vision"].to(device) if b["vision"] is not None and model.uses_vision else None
    vlens = b["vision_lens"] if vis is not None else None
    return model(text, audio, b["audio_lens"].to(device), vis, vlens.to(device) if vlens is not None else None,
                 labels=b["labels"].to(device) if with_labels else None,
                 index=b["index"] if with_labels else None)


@torch.no_grad()
def evaluate(model: FusionHead, split: FusionSplit, featurizer=None, batch_size: int = 32, device="cpu",
             family: str = "mosi") -> dict[str, float]:
    """MMSA metrics of ``model`` on a split (eval mode)."""
    model.eval()
    preds = []
    for i in range(0, len(split), batch_size):
        b = split.batch(range(i, min(i + batch_size, len(split))))
        preds.append(_forward(model, b, featurizer, device, False).pred.float().cpu())
    return regression_metrics(torch.cat(preds), split.labels, family)


def epoch_batches(order: list[int], batch_size: int) -> list[list[int]]:
    """``order`` cut into batches of ``batch_size``; a last batch of one item joins the one before it
    (BatchNorm heads cannot train on one sample)."""
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2].extend(batches.pop())
    return batches


class FusionModel(nn.Module):
    """A fusion head plus, for weighted-sum audio, the layer weights trained with it: one module, so the best
    dev weights are one state dict. The featurizer itself (the frozen upstream) is not a submodule."""

    def __init__(self, head: FusionHead, featurizer=None, layer_weights: nn.Parameter | None = None):
        super().__init__()
        self.head = head
        self.__dict__["featurizer"] = featurizer  # kept out of parameters, state dicts and train()/eval()
        self.layer_weights = layer_weights

    def forward(self, b: dict, device) -> FusionOutput:
        return _forward(self.head, b, self.featurizer, device, True)


class FusionTask(TrainTask):
    """A fusion head as a :class:`~audiorep.train.Trainer` task: shuffled index batches of the training split
    (a seeded generator, one permutation per epoch) -> the head's total loss; dev -> MMSA metrics."""

    def __init__(self, model: FusionModel, splits: dict[str, FusionSplit], cfg: FusionConfig, seed: int,
                 groups: list[dict], device: torch.device, train: str = "train", dev: str = "dev"):
        self.model, self.splits, self.cfg, self.seed, self.device = model, splits, cfg, seed, device
        self.train, self.dev = train, dev
        self.groups = groups
        self.name = f"fusion {cfg.head}"  # progress bar and logs
        self.log_metrics = ["MAE", "Corr"]  # dev columns of metrics.csv
        self.generator = torch.Generator().manual_seed(seed)

    def steps_per_epoch(self) -> int:
        return len(epoch_batches(list(range(len(self.splits[self.train]))), self.cfg.batch_size))

    def train_batches(self, epoch: int, rank: int, world: int):
        tr = self.splits[self.train]
        for idx in epoch_batches(torch.randperm(len(tr), generator=self.generator).tolist(), self.cfg.batch_size):
            yield tr.batch(idx)

    def parameters(self) -> list[nn.Parameter]:
        # clipped in group order (head, text encoder, layer weights): the global norm sums them in this order
        return [p for grp in self.groups for p in grp["params"]]

    def prepare(self, b: dict, step: int, device: torch.device):
        return b, 1.0, len(b["labels"])  # the head's loss is a batch mean: one count per batch

    def forward(self, runner: nn.Module, b: dict) -> tuple[torch.Tensor, FusionOutput]:
        out = runner(b, self.device)
        return out.losses["total"], out

    def after_step(self, outputs: list[FusionOutput], batches: list[dict], epoch: int) -> None:
        for out, b in zip(outputs, batches):  # epoch: finished epochs, so + 1 is the current one (1-based)
            self.model.head.on_train_batch_end(out, b["labels"].to(self.device), b["index"].to(self.device), epoch + 1)

    def evaluate(self) -> dict[str, float]:
        dm = evaluate(self.model.head, self.splits[self.dev], self.model.featurizer, device=self.device,
                      family=self.cfg.metrics)
        log.info("seed %d dev MAE %.4f Corr %.4f", self.seed, dm["MAE"], dm["Corr"])
        return dm


def train_one(model: FusionHead, splits: dict[str, FusionSplit], cfg: FusionConfig, seed: int, featurizer=None,
              dev: str = "dev", test: str = "test", train: str = "train") -> dict[str, Any]:
    """Train with early stopping on ``cfg.select_metric`` of dev (the shared Trainer). Returns {"dev": best dev
    metrics, "test": test metrics at that epoch, "test_audio_swapped": the same with each test item given
    another's audio, "best_epoch", "epochs_run", "seconds"}."""
    device = torch.device(cfg.device)
    model.to(device)
    tr = splits[train]
    model.setup_train_set(tr.labels.to(device))
    text_params = {id(p) for p in model.text_parameters()}
    head_params = [p for p in model.parameters() if p.requires_grad and id(p) not in text_params]
    groups = [{"params": head_params, "lr": cfg.lr}]
    if text_params:
        groups.append({"params": model.text_parameters(), "lr": cfg.text_lr})
    fw = None
    if featurizer is not None and featurizer.weights is not None and tr.audio[0].dim() == 3:
        fw = featurizer.weights
        fw.data.zero_()
        fw.requires_grad_(True)
        groups.append({"params": [fw], "lr": cfg.lr})
    t0 = time.time()
    # MMSA trains these heads with torch.optim.Adam (L2 decay) at constant rates; cosine is the TEASEL schedule
    optim = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, algorithm="adam", schedule=cfg.lr_schedule,
                        warmup_ratio=cfg.warmup_ratio if cfg.lr_schedule == "cosine" else 0.0,
                        grad_clip=cfg.grad_clip)
    run_cfg = TrainConfig(epochs=cfg.epochs, patience=cfg.patience, select_metric=cfg.select_metric, seed=seed,
                          precision="fp32", device=cfg.device, progress=False)
    wrapped = FusionModel(model, featurizer, fw)
    task = FusionTask(wrapped, splits, cfg, seed, groups, device, train=train, dev=dev)
    trainer = Trainer(wrapped, task, None, run_cfg, optim, None, DistContext(device=device),
                      optimizer=build_optimizer(None, optim, groups))
    trainer.fit()
    best = None
    if trainer.best_state is not None:
        best = trainer.load_best()["dev"]
    tm = evaluate(model, splits[test], featurizer, device=device, family=cfg.metrics)
    # the control: test texts with other utterances' audio; the same figures mean the head ignores the audio
    swapped = evaluate(model, splits[test].with_audio_swapped(), featurizer, device=device, family=cfg.metrics)
    return {"dev": best, "test": tm, "test_audio_swapped": swapped, "best_epoch": trainer.selection.best_epoch,
            "epochs_run": trainer.epoch, "seconds": round(time.time() - t0, 1)}


def _text_side(cfg: FusionConfig, train_texts: list[str], text_dim: int | None) -> TextEncoder:
    if cfg.text_features:
        if text_dim is None:
            raise ConfigError("text_features=true needs MMSA text features (set mmsa=PATH)")
        return TextEncoder(feature_dim=text_dim)
    from .lm import encoder_for

    tok, model, where = encoder_for(cfg.text_model, train_texts)
    log.info("text encoder: %s", where)
    return TextEncoder(model, tok, max_tokens=cfg.max_tokens)


def summarize(results: list[dict[str, Any]], keys=("MAE", "Corr", "Has0_acc_2", "Non0_acc_2", "Has0_F1",
                                                     "Non0_F1", "Mult_acc_7")) -> dict[str, tuple[float, float]]:
    """Mean and (sample) std over seeds of each test metric, and of Corr with the audio swapped
    (``Corr_audio_swapped``) where the runs report it."""
    cells = {k: [r["test"][k] for r in results if k in r["test"]] for k in keys}
    cells["Corr_audio_swapped"] = [r["test_audio_swapped"]["Corr"] for r in results if r.get("test_audio_swapped")]
    out = {}
    for k, values in cells.items():
        v = np.array(values, dtype=np.float64)
        if len(v):
            out[k] = (float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0)
    return out


def run(cfg: FusionConfig) -> dict[str, Any]:
    """Everything for one head: data, text side, one training per seed; writes ``<out_dir>/<head>.json``.

    Returns ``{"head", "config", "runs": [per seed], "summary": {metric: (mean, std)}}``.
    """
    from ..locking import FileLock

    # One lock per head: heads (and merges of per-seed runs) may share out_dir, but two runs of one head
    # would overwrite each other's <head>.json.
    lock = FileLock(Path(cfg.out_dir) / f".{cfg.head}.lock")
    if not lock.acquire(timeout=0):
        raise BusyError(f"{cfg.out_dir}: another run of head {cfg.head!r} (pid {lock.holder()}) is writing "
                        f"{cfg.head}.json here; wait for it to finish or choose another out_dir")
    try:
        claim_new(Path(cfg.out_dir), [f"{cfg.head}.json"], replace=True)  # a user's file: refused before the work
        return _run(cfg)
    finally:
        lock.release()


def _run(cfg: FusionConfig) -> dict[str, Any]:
    from ..train.rng import seed_everything

    featurizer = None
    if cfg.mmsa:
        from .data import load_mmsa_splits

        splits = load_mmsa_splits(cfg.mmsa, use_vision=cfg.use_vision)
        names = ("train", "dev", "test")
    else:
        from .data import corpus_splits

        names = (cfg.train_split, cfg.dev_split, cfg.test_split)
        splits, featurizer = corpus_splits(cfg.data, names, cfg.upstream, cfg.mode, cfg.layer, cfg.audio_pool,
                                           cfg.label_key, cfg.feature_cache, "cpu", cfg.max_utts)
    tr = splits[names[0]]
    a0 = tr.audio[0]
    audio_dim = int(a0.shape[-1])
    vision_dim = int(tr.vision[0].shape[-1]) if tr.vision is not None else None
    text_dim = int(tr.text_features[0].shape[-1]) if tr.text_features is not None else None
    runs = []
    for seed in cfg.seeds:
        seed_everything(seed)
        spec = HEADS[cfg.head]
        decoder = text = None
        head_args = dict(cfg.head_args)
        if "decoder_lm" in spec.needs:
            from .lm import decoder_for

            tok, lm, where = decoder_for(cfg.decoder_lm, tr.raw_text)
            log.info("decoder LM: %s", where)
            decoder = (tok, lm)
            if any(f.name == "max_tokens" for f in dataclasses.fields(spec.config)):
                head_args = {"max_tokens": cfg.max_tokens, **head_args}  # the head tokenizes the text itself
        if "text" in spec.needs:
            text = _text_side(cfg, tr.raw_text, text_dim)
        model = build_head(cfg.head, audio_dim, vision_dim, text, decoder=decoder, head_args=head_args)
        seed_everything(seed)
        r = train_one(model, splits, cfg, seed, featurizer, dev=names[1], test=names[2], train=names[0])
        r["seed"] = seed
        runs.append(r)
        log.info("%s seed %d: test %s", cfg.head, seed, {k: round(v, 4) for k, v in r["test"].items()})
        res = write_results(cfg.out_dir, cfg.head, runs, dataclasses.asdict(cfg))  # after every seed: partial
    return res


def write_results(out_dir: str, head: str, runs: list[dict[str, Any]], config: dict[str, Any] | None = None
                  ) -> dict[str, Any]:
    """``<out_dir>/<head>.json`` = {"head", "config", "runs", "summary"}, written atomically."""
    res = {"head": head, "config": config, "runs": runs, "summary": summarize(runs)}
    out = Path(out_dir)
    claim_new(out, [f"{head}.json"], replace=True)  # a user's file of that name is refused, not replaced
    atomic_write_bytes(out / f"{head}.json", (json.dumps(res, indent=2, default=_nan_safe) + "\n").encode())
    return res


def merge_results(out_dir: str, files: list[str]) -> dict[str, Any]:
    """Result JSONs of one head run as separate processes (e.g. one per seed) -> one ``<out_dir>/<head>.json``."""
    parts = [json.loads(Path(f).read_text()) for f in files]
    heads = {p["head"] for p in parts}
    if len(heads) != 1:
        raise ConfigError(f"merge: result files hold different heads {sorted(heads)}")
    runs = sorted((r for p in parts for r in p["runs"]), key=lambda r: r.get("seed") or 0)
    seeds = [r.get("seed") for r in runs]
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"merge: seed(s) repeated across files: {seeds}")
    return write_results(out_dir, heads.pop(), runs, parts[0].get("config"))


def _nan_safe(x):
    return None if isinstance(x, float) and math.isnan(x) else str(x)
