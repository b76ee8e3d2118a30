"""One downstream run: check the data, (cache upstream states,) train a head with early stopping on dev,
evaluate the best dev checkpoint on test once. What ``audiorep downstream`` calls.

Speed: in the frozen modes (weighted-sum, last, layer) the upstream's output never changes, so it runs
once per utterance and split and the head trains on the cached hidden states (fp16, in memory; with
``feature_cache`` also on disk, shared by every run over the same upstream and split). An epoch then costs
only the head. Finetune mode runs the upstream every step.

Under torchrun (WORLD_SIZE > 1) the training batches are split across processes and the trainable part is
wrapped in DistributedDataParallel; every rank evaluates the whole dev/test split (so early-stopping
decisions agree without communication) and rank 0 writes files.

Resume works at epoch granularity: after every epoch the run folder gets an atomic checkpoint (trainable
weights, optimiser, early-stopping state, RNG) and ``best.pt`` holds the best dev weights so far.
The loop itself is :class:`audiorep.train.Trainer` (epochs, dev evaluation, early stopping, best weights,
DDP, resume); this module supplies the data, the model and :class:`ProbeTask`.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from ..data.corpus import get_corpus
from ..data.dataset import AudioDataset, LengthBucketBatchSampler, collate_waveforms
from ..data.manifest import Utterance, seeded_subset
from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_bytes
from ..locking import lock_run_folder
from ..train.checkpoint import CheckpointManager
from ..train.rng import seed_everything
from ..config import load, to_dict
from ..train.distributed import DistContext, barrier, init_distributed, shutdown
from ..train.optim import OptimConfig, build_optimizer, param_groups
from ..ownership import check_output_dir
from ..train.run_folder import prepare_run_folder
from ..train.task import TrainableState, TrainTask
from ..train.trainer import TrainConfig, Trainer, autocast_context
from .cache import cache_file, feature_cache_key, load_features, save_features, utterance_ident
from ..models.featurizer import MODES, Featurizer
from ..weights.loading import load_upstream
from .heads import build_head
from .plots import plot_layer_weights, plot_learning_curves
from ..validate import DROPOUT, GRAD_CLIP, LR, SEED, WEIGHT_DECAY, check_ranges, ints, reals
from .tasks import Task, build_task

log = logging.getLogger(__name__)


@dataclass
class DownstreamConfig:
    """One downstream run (YAML + ``key=value`` overrides, like pretraining configs)."""

    task: str = "phone"  # phone | speaker | sentiment
    upstream: str = "logmel"  # registered name, model folder, s3prl checkpoint, hf:/torchaudio: encoder, or "logmel"
    mode: str = "weighted-sum"  # weighted-sum | finetune | last | layer
    layer: int | None = None  # hidden state for mode=layer; in finetune: None = weighted sum, N = that state
    layer_norm: bool = False  # per-hidden-state layer norm before the weighted sum (s3prl's option, off there too)
    head: str | None = None  # None = the task's default_head (probe/tasks/)
    mlp_size: int = 256  # hidden width of the *-mlp heads
    dropout: float = 0.1  # dropout inside the *-mlp heads
    data: str = "synth"  # bundled corpus name, corpus folder or manifest
    train_split: str = "train"
    dev_split: str = "dev"
    test_split: str = "test"
    max_utts: int | None = None  # seeded subset of each split (quick runs); None = all
    max_train_utts: int | None = None  # seeded subset of the training split only (cheap finetune cells)
    label_tolerance: int = 2  # frames by which labels and upstream frames may differ (see tasks.py)
    out_dir: str | None = None  # run folder; None = exp/downstream/<task>-<upstream>-<mode>-<head>
    # Stopping rule: halve the lr after plateau_patience epochs without a better dev score, stop after
    # patience of them. With a fixed lr and patience 4 a linear phone probe was still climbing at epoch 20.
    epochs: int = 100  # maximum epochs
    patience: int | None = 8  # stop after this many evaluations without a better dev score; None = never
    plateau_patience: int | None = 3  # halve the lr after this many epochs without a better dev score
    batch_size: int = 16  # utterances per step
    lr: float = 1e-2  # head + layer weights; linear probes on frozen features converge slowly at 1e-3
    upstream_lr: float = 5e-5  # upstream learning rate in finetune mode (a large one destroys the pretraining)
    weight_decay: float = 0.0  # AdamW decay on weight matrices (not biases / norms)
    grad_clip: float = 5.0  # max global grad norm; 0 disables
    seed: int = 0  # init, shuffling and subsets
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    # auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | int8: a frozen upstream with dynamic int8
    # linears on CPU (what `extract --precision int8` deploys), so a probe measures what int8 costs; heads stay fp32
    precision: str = "auto"
    cache: str = "memory"  # frozen modes: "memory" (cache upstream states) or "none" (run upstream each step)
    feature_cache: str | None = None  # also keep caches on disk in this folder, shared across runs (probe table)
    cache_batch_seconds: float = 60.0  # padded audio per upstream batch while caching
    progress: bool = True  # tqdm bars on stderr
    plots: bool = True  # layer-weight and learning-curve PNGs in the run folder (a sweep of many runs skips them)
    # Step budget (SUPERB's protocol): train max_steps optimiser steps over as many passes as that takes,
    # evaluating dev every eval_every steps; None keeps the epoch budget above.
    max_steps: int | None = None
    eval_every: int = 0  # steps between dev evaluations with max_steps (0 = max_steps // 10)
    grad_accum: int = 1  # batches per optimiser step (SUPERB's gradient_accumulate_steps)
    # Longest padded audio per training batch (seconds; batch_size still caps the count): memory follows
    # duration, not count, so long utterances do not run out of memory. None = count only.
    batch_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.cache not in ("memory", "none"):
            raise ConfigError(f"cache must be 'memory' or 'none', got {self.cache!r}")
        check_ranges(self, "", {
            "layer": ints(-10**4, 10**4, "(a hidden-state index; negative counts from the last)", optional=True),
            "mlp_size": ints(1, 2**20, "hidden units"), "dropout": DROPOUT,
            "max_utts": ints(1, 10**9, "utterances", optional=True),
            "max_train_utts": ints(1, 10**9, "utterances", optional=True),
            "label_tolerance": ints(0, 10**6, "frames"), "epochs": ints(1, 10**6, "epochs"),
            "patience": ints(1, 10**6, "evaluations", optional=True),
            "plateau_patience": ints(1, 10**6, "evaluations", optional=True),
            "batch_size": ints(1, 10**6, "utterances"), "lr": LR, "upstream_lr": LR, "weight_decay": WEIGHT_DECAY,
            "grad_clip": GRAD_CLIP, "seed": SEED,
            "cache_batch_seconds": reals(0.0, 10**6, "seconds of padded audio", low_open=True),
            "max_steps": ints(1, 10**12, "steps", optional=True), "eval_every": ints(0, 10**12, "steps"),
            "grad_accum": ints(1, 10**6, "batches"),
            "batch_seconds": reals(0.0, 10**6, "seconds of padded audio", low_open=True, optional=True),
        })
        if self.precision not in ("auto", "fp32", "bf16", "int8"):
            raise ConfigError(f"precision must be auto, fp32, bf16 or int8, got {self.precision!r}")
        if self.precision == "int8" and self.mode == "finetune":
            raise ConfigError("precision int8 quantises a frozen upstream; mode finetune trains it, so use a frozen "
                              "mode (weighted-sum, last, layer) or precision fp32/bf16")

    def run_dir(self) -> Path:
        if self.out_dir:
            return Path(self.out_dir)
        up = Path(self.upstream)
        tag = up.parent.name if up.name in ("final", "") and up.parent.name else up.stem or self.upstream
        mode = self.mode + (f"{self.layer}" if self.layer is not None else "")
        return Path("exp") / "downstream" / f"{self.task}-{tag}-{mode}-{self.head or 'default'}"


def load_config(path: str | os.PathLike | None = None, overrides: Sequence[str] = ()) -> DownstreamConfig:
    """YAML file + ``key=value`` overrides -> a checked :class:`DownstreamConfig` (the shared loader)."""
    return load(DownstreamConfig, path, overrides)


@dataclass
class DownstreamResult:
    out_dir: Path
    test: dict[str, float]  # test metrics of the best dev checkpoint
    best_dev: dict[str, float]
    best_epoch: int
    epochs_run: int
    layer_weights: list[float]  # softmax weights (one-hot for single-layer modes)
    history: list[dict[str, float]] = field(default_factory=list)  # one row per epoch
    cache_seconds: float = 0.0  # time spent running the upstream to fill caches
    train_seconds: float = 0.0  # epochs (train + dev) of this call
    best_step: int = 0  # optimiser step of the best dev evaluation
    steps_run: int = 0  # optimiser steps trained in all


class DownstreamModel(TrainableState, nn.Module):
    """Featurizer + head; :meth:`forward` on waveforms, :meth:`forward_states` on cached hidden states."""

    def __init__(self, featurizer: Featurizer, head: nn.Module):
        super().__init__()
        self.featurizer = featurizer
        self.head = head

    def forward(self, x: torch.Tensor, lens: torch.Tensor, kind: str = "wavs") -> tuple[torch.Tensor, torch.Tensor]:
        """``kind="wavs"``: waveforms (B, S) + samples (B,); ``kind="states"``: cached states (K, B, T, H) +
        frames (B,). One entry point, so a DistributedDataParallel wrapper sees every training forward."""
        if kind == "states":
            return self.forward_states(x, lens)
        feats, lengths = self.featurizer(x, lens)  # (B, T, H), (B,)
        return self.head(feats, lengths), lengths

    def forward_states(self, states: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats = self.featurizer.combine(states, lengths)  # (K, B, T, H) -> (B, T, H)
        return self.head(feats, lengths), lengths

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        skip = "featurizer.upstream." if self.featurizer.frozen else None
        return {k: v for k, v in self.state_dict().items() if skip is None or not k.startswith(skip)}

    def load_trainable(self, state: dict[str, torch.Tensor], source: str) -> None:
        if self.featurizer.frozen:
            # a frozen upstream is never loaded: it is not in the checkpoint, and an int8 one would refuse a
            # partial state; the head and the layer weights are copied in place
            up = "featurizer.upstream."
            own = {k: v for k, v in [*self.named_parameters(), *self.named_buffers()] if not k.startswith(up)}
            missing = [k for k in own if k not in state]
            unexpected = [k for k in state if k not in own]
            shapes = [k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
            if missing or unexpected or shapes:
                raise CheckpointError(f"{source}: does not fit this run (missing {missing[:4]}, unexpected "
                                      f"{unexpected[:4]}, other shapes {shapes[:4]}); was it written with another "
                                      "task/mode/head?")
            with torch.no_grad():
                for k, v in own.items():
                    v.copy_(state[k])
            return
        missing, unexpected = self.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"{source}: does not fit this run (missing {list(missing)[:4]}, "
                                  f"unexpected {list(unexpected)[:4]}); was it written with another task/mode/head?")


# ---------------------------------------------------------------- data

def check_upstream(task: Task, featurizer: Featurizer, splits: dict[str, list[Utterance]], device: torch.device
                   ) -> None:
    """Frame rate and sample rate of the upstream vs the data, before any training (ConfigError otherwise)."""
    up = featurizer.upstream
    sr = getattr(up, "sample_rate", None)
    rates = sorted({u.sample_rate for us in splits.values() for u in us})
    if sr is not None and rates != [sr]:
        raise ConfigError(f"the corpus is sampled at {rates} Hz but the upstream expects {sr} Hz; "
                          "resample the corpus (audiorep data prepare) or use a matching upstream")
    if not task.frame_level:
        return
    if getattr(up, "frame_hop", None) is not None:  # hf:/torchaudio: encoders: 20 ms frames, labels follow
        task.match_frame_hop(int(up.frame_hop), int(up.sample_rate))
    fc = getattr(up, "feature_config", None)
    if fc is not None and fc.hop_length * 100 != fc.sample_rate:
        raise ConfigError(f"task {task.name!r} has 10 ms frame labels but the upstream's frame shift is "
                          f"{fc.hop_ms:g} ms ({fc.hop_length} samples at {fc.sample_rate} Hz)")
    # whatever the upstream is: one real utterance through it must give the labels' frame count
    first = min(next(iter(splits.values())), key=lambda u: u.num_samples)
    from ..audio import read_audio

    wav, _ = read_audio(first.path)
    with torch.no_grad():
        _, lengths = featurizer.upstream_states(wav[None].to(device), torch.tensor([wav.numel()], device=device))
    task.target(first, int(lengths[0]))  # raises naming the utterance when the counts disagree


def _wave_batches(utts: list[Utterance], sample_rate: int, batch_size: int, shuffle: bool, seed: int, epoch: int,
                  max_batch_samples: int | None = None, rank: int = 0, world: int = 1) -> Iterator[dict[str, Any]]:
    ds = AudioDataset(utts, sample_rate)
    sampler = LengthBucketBatchSampler(ds.lengths, batch_size, shuffle=shuffle, seed=seed, num_replicas=world,
                                       rank=rank, max_batch_samples=max_batch_samples)
    sampler.set_epoch(epoch)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate_waveforms, num_workers=0)
    yield from loader


@torch.no_grad()
def build_cache(featurizer: Featurizer, utts: list[Utterance], cfg: DownstreamConfig, device: torch.device,
                desc: str) -> list[torch.Tensor]:
    """Hidden states (K, T_i, H) fp16 on CPU per utterance, in ``utts`` order (K = featurizer.needed_states).

    With ``cfg.feature_cache`` every hidden state is kept on disk (so the other frozen modes reuse the file)
    and only the needed ones in memory.
    """
    disk = None
    if cfg.feature_cache:  # every hidden state is stored, so the key needs no mode or layer
        key = feature_cache_key(featurizer.upstream, utterances=utterance_ident(utts))
        disk = cache_file(cfg.feature_cache, desc, key)
        stored = load_features(disk, [u.id for u in utts])
        if stored is not None:
            return [stored[u.id][featurizer.needed_states].contiguous() for u in utts]
    keep = list(range(featurizer.num_states)) if disk is not None else featurizer.needed_states
    sr = int(getattr(featurizer.upstream, "sample_rate", utts[0].sample_rate))
    out: dict[str, torch.Tensor] = {}
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(utts), desc=f"cache {desc}", unit="utt", leave=False, file=sys.stderr)
    featurizer.upstream.eval()
    for batch in _wave_batches(utts, sr, 64, False, cfg.seed, 0, int(cfg.cache_batch_seconds * sr)):
        out_h = featurizer.upstream(batch["wavs"].to(device), batch["wav_lens"].to(device))
        hs = torch.stack([out_h.hidden_states[i] for i in keep], 0)  # (K, B, T, H)
        for b, utt_id in enumerate(batch["id"]):
            n = int(out_h.lengths[b])
            out[utt_id] = hs[:, b, :n].to(torch.float16).cpu().contiguous()  # (K, T_b, H)
        if bar is not None:
            bar.update(len(batch["id"]))
    if bar is not None:
        bar.close()
    if disk is not None:
        save_features(disk, out)
        return [out[u.id][featurizer.needed_states].contiguous() for u in utts]
    return [out[u.id] for u in utts]


class _Split:
    """One split's utterances with (frozen modes) their cached states and targets."""

    def __init__(self, name: str, utts: list[Utterance], task: Task, states: list[torch.Tensor] | None,
                 frame_hop: int = 160):
        self.name, self.utts, self.task, self.states = name, utts, task, states
        self.frame_hop = frame_hop  # samples per upstream frame: crops and duration caps in frames
        self.by_id = {u.id: u for u in utts}
        self.targets = None
        if states is not None:
            self.targets = [task.target(u, s.shape[1]) for u, s in zip(utts, states)]

    def batches(self, cfg: DownstreamConfig, sample_rate: int, shuffle: bool, epoch: int, device: torch.device,
                rank: int = 0, world: int = 1) -> Iterator[tuple[str, torch.Tensor, torch.Tensor, torch.Tensor]]:
        """Yields (kind, inputs, lengths, targets); kind "states": inputs (K, B, T, H); kind "wavs": (B, S).

        ``rank``/``world`` split the batches across DDP processes (equal counts per rank)."""
        if self.states is not None:
            # training examples may be crops (the task's train_window, seeded by seed and epoch)
            rng = random.Random(f"audiorep-window:{cfg.seed}:{epoch}")
            windows = [self.task.train_window(s.shape[1], self.frame_hop, rng) if shuffle else (0, s.shape[1])
                       for s in self.states]
            lengths = [n for _, n in windows]
            cap = None
            if cfg.batch_seconds is not None:
                cap = int(cfg.batch_seconds * sample_rate / self.frame_hop)  # frames of padded audio per batch
                if max(lengths) > cap:
                    if shuffle:
                        raise ConfigError(
                            f"batch_seconds={cfg.batch_seconds:g} s is shorter than the longest training example of "
                            f"split {self.name!r} ({max(lengths) * self.frame_hop / sample_rate:.2f} s); raise it")
                    cap = max(lengths)  # evaluation never crops: one long utterance gets a batch of its own
            sampler = LengthBucketBatchSampler(lengths, cfg.batch_size, shuffle=shuffle, seed=cfg.seed,
                                               num_replicas=world, rank=rank, max_batch_samples=cap)
            sampler.set_epoch(epoch)
            for idx in sampler:
                lens = torch.tensor([lengths[i] for i in idx], dtype=torch.long)  # (B,)
                K, _, H = self.states[idx[0]].shape
                x = torch.zeros(K, len(idx), int(lens.max()), H, dtype=torch.float16)  # (K, B, T, H)
                for j, i in enumerate(idx):
                    start, n = windows[i]
                    x[:, j, :n] = self.states[i][:, start : start + n]
                tgt = self.task.collate_targets([self.targets[i] for i in idx])
                yield "states", x.to(device), lens.to(device), tgt.to(device)
            return
        for batch in _wave_batches(self.utts, sample_rate, cfg.batch_size, shuffle, cfg.seed, epoch, rank=rank,
                                   world=world):
            yield "wavs", batch["wavs"].to(device), batch["wav_lens"].to(device), batch["id"]

    def __len__(self) -> int:
        return len(self.utts)


def _forward(model: nn.Module, task: Task, kind: str, x, lens, tgt, split: _Split, device: torch.device):
    """Outputs, frame/utterance lengths and targets for one batch of either kind (model may be DDP-wrapped)."""
    out, lengths = model(x, lens, kind=kind)
    if kind == "states":
        return out, lengths, tgt
    tgts = [task.target(split.by_id[i], int(n)) for i, n in zip(tgt, lengths.tolist())]
    return out, lengths, task.collate_targets(tgts).to(device)


@torch.no_grad()
def evaluate(model: DownstreamModel, task: Task, split: _Split, cfg: DownstreamConfig, sample_rate: int,
             device: torch.device) -> dict[str, float]:
    """Metrics of ``model`` on one split (plus the mean loss per batch)."""
    model.eval()
    meter = task.meter()
    loss_sum, n = 0.0, 0
    for kind, x, lens, tgt in split.batches(cfg, sample_rate, False, 0, device):
        with autocast_context(device, cfg.precision):
            out, lengths, tgt = _forward(model, task, kind, x, lens, tgt, split, device)
        loss_sum += float(task.loss(out.float(), tgt, lengths))
        n += 1
        meter.update(out.float(), tgt, lengths)
    res = meter.compute()
    res["loss"] = loss_sum / max(n, 1)
    return res


# ---------------------------------------------------------------- the run

class ProbeTask(TrainTask):
    """Probing as a :class:`~audiorep.train.Trainer` task: a batch of cached states (or waveforms) -> the head's
    mean loss; :meth:`evaluate` -> the task's metrics on dev."""

    def __init__(self, task: Task, model: DownstreamModel, splits: dict[str, _Split], cfg: DownstreamConfig,
                 sample_rate: int, device: torch.device):
        self.task, self.model, self.splits, self.cfg = task, model, splits, cfg
        self.sample_rate, self.device = sample_rate, device
        self.name = f"probe {task.name}"  # progress bar and logs
        self.log_metrics = ["loss", task.primary]  # dev columns of metrics.csv

    def train_batches(self, epoch: int, rank: int, world: int):
        return self.splits["train"].batches(self.cfg, self.sample_rate, True, epoch, self.device, rank, world)

    def prepare(self, batch, step: int, device: torch.device):
        # the head's loss is already a batch mean: one count per batch (DDP then averages over ranks)
        return batch, 1.0, batch[2].shape[0]

    def forward(self, runner: nn.Module, batch) -> tuple[torch.Tensor, None]:
        kind, x, lens, tgt = batch
        out, lengths, tgt = _forward(runner, self.task, kind, x, lens, tgt, self.splits["train"], self.device)
        return self.task.loss(out.float(), tgt, lengths), None

    def evaluate(self) -> dict[str, float]:
        return evaluate(self.model, self.task, self.splits["dev"], self.cfg, self.sample_rate, self.device)


def _param_groups(model: DownstreamModel, cfg: DownstreamConfig) -> list[dict]:
    """Head and layer weights at ``lr``; the upstream (finetune mode) at the much smaller ``upstream_lr``."""
    groups = param_groups(model.head, cfg.weight_decay, lr=cfg.lr)
    if model.featurizer.weights is not None:
        groups.append({"params": [model.featurizer.weights], "weight_decay": 0.0, "lr": cfg.lr})
    if not model.featurizer.frozen:
        groups += param_groups(model.featurizer.upstream, cfg.weight_decay, lr=cfg.upstream_lr)
    return groups


# Settings a resumed run may change: how long it may go on and where and how visibly it runs. The rest
# (upstream, task, head, data, optimiser, seed) belongs to the checkpoint being continued.
RESUME_MAY_CHANGE = ("out_dir", "epochs", "patience", "device", "progress", "cache", "feature_cache",
                     "cache_batch_seconds")


def run_downstream(cfg: DownstreamConfig, resume: bool = False, overwrite: bool = False,
                   upstream: nn.Module | None = None, splits: dict[str, list[Utterance]] | None = None,
                   states: dict[str, torch.Tensor] | None = None, test: bool = True) -> DownstreamResult:
    """Train and evaluate one (task, upstream, mode, head) combination; see the module doc.

    ``upstream`` replaces loading ``cfg.upstream`` (tests, notebooks). ``splits`` ({"train", "dev", "test"}
    -> utterances) replaces reading the corpus's split manifests (ER's folds); ``states`` ({utterance id:
    every hidden state (K, T, H)}, e.g. one cache over a whole corpus) replaces building the caches.
    ``test=False`` trains and selects on dev only (result ``test`` empty): a learning-rate sweep reads test
    later, by resuming the chosen run with ``test=True``. Raises ConfigError before training
    for an empty split, a task the corpus has no labels for, labels outside the class set, or an upstream
    whose frame rate or sample rate does not match the data. Under torchrun every rank calls this.
    """
    check_output_dir(cfg.run_dir())  # a file in the way or a name too long: refused before any work
    if cfg.feature_cache:
        check_output_dir(Path(cfg.feature_cache), "--feature-cache")
    ctx = init_distributed(cfg.device)
    lock = None
    try:
        if ctx.is_main:
            # held for the whole run: a second run into the same folder would interleave its files with ours
            lock = lock_run_folder(cfg.run_dir())
        return _run(cfg, ctx, resume, overwrite, upstream, splits, states, test)
    finally:
        if lock is not None:
            lock.release()
        shutdown(ctx)


def _run(cfg: DownstreamConfig, ctx: DistContext, resume: bool, overwrite: bool, upstream: nn.Module | None,
         given: dict[str, list[Utterance]] | None = None, states: dict[str, torch.Tensor] | None = None,
         test: bool = True) -> DownstreamResult:
    out_dir = cfg.run_dir()
    ckpts = CheckpointManager(out_dir / "checkpoints", keep_last=1)
    prepare_run_folder(out_dir, ckpts, ctx, resume=resume, overwrite=overwrite,
                       outputs=("config.json", "best.pt", "metrics.csv", "results.json", "layer_weights.png",
                                "learning_curve.png"),
                       config_file="config.json", config=to_dict(cfg), may_change=RESUME_MAY_CHANGE)
    device = ctx.device

    # 1. data and labels, checked before anything heavy
    task = build_task(cfg.task, cfg.head, cfg.label_tolerance)
    corpus = get_corpus(cfg.data)
    names = {"train": cfg.train_split, "dev": cfg.dev_split, "test": cfg.test_split}
    if given is not None:
        utts = {role: list(given[role]) for role in names}
    else:
        utts = {role: seeded_subset(corpus.manifest(split), cfg.max_utts, cfg.seed) for role, split in names.items()}
    utts["train"] = seeded_subset(utts["train"], cfg.max_train_utts, cfg.seed)
    task.setup(corpus, {names[r]: u for r, u in utts.items()}, cfg.train_split)

    # 2. upstream + featurizer + head
    seed_everything(cfg.seed)
    up = upstream if upstream is not None else load_upstream(cfg.upstream, device=device)
    up = up.to(device)
    if cfg.precision == "int8":
        if device.type != "cpu":
            raise ConfigError(f"precision int8: dynamic int8 linears run on CPU; use device cpu, not {device}")
        from ..weights.export import quantize_int8

        up = quantize_int8(copy.deepcopy(up) if upstream is not None else up, f"precision int8: {cfg.upstream}")
    featurizer = Featurizer(up, cfg.mode, cfg.layer, cfg.layer_norm)
    check_upstream(task, featurizer, {names[r]: u for r, u in utts.items()}, device)
    head = build_head(task.head, featurizer.hidden_size, task.num_outputs, cfg.mlp_size, cfg.dropout)
    model = DownstreamModel(featurizer, head).to(device)
    sample_rate = int(getattr(up, "sample_rate", 16000))
    fc = getattr(up, "feature_config", None)
    frame_hop = int(getattr(up, "frame_hop", None) or (fc.hop_length if fc is not None else 160))

    # 3. caches (frozen modes)
    t0 = time.perf_counter()
    use_cache = featurizer.frozen and cfg.cache == "memory"
    splits = {}
    for role, us in utts.items():
        if states is not None and use_cache:
            cached = [states[u.id][featurizer.needed_states].contiguous() for u in us]
        else:
            cached = build_cache(featurizer, us, cfg, device, names[role]) if use_cache else None
        splits[role] = _Split(names[role], us, task, cached, frame_hop)
    cache_seconds = time.perf_counter() - t0

    # 4. training (fresh or resumed): epochs, dev every epoch, early stopping on the task's primary metric
    if ctx.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "config.json", json.dumps(to_dict(cfg), indent=2).encode())
    barrier(ctx)
    budget: dict[str, Any] = {"epochs": cfg.epochs}
    if cfg.max_steps is not None:  # step budget: dev every eval_every steps, a checkpoint at each evaluation
        every = cfg.eval_every or max(1, cfg.max_steps // 10)
        budget = {"epochs": None, "max_steps": cfg.max_steps, "eval_every": every, "ckpt_every": every}
    train = TrainConfig(**budget, grad_accum=cfg.grad_accum, patience=cfg.patience,
                        plateau_patience=cfg.plateau_patience, select_metric=task.primary,
                        select_mode=task.select_mode, keep_last=1,
                        seed=cfg.seed, precision="fp32" if cfg.precision == "int8" else cfg.precision,
                        device=cfg.device, progress=cfg.progress)
    optim = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_ratio=0.0, schedule="constant",
                        grad_clip=cfg.grad_clip)
    probe = ProbeTask(task, model, splits, cfg, sample_rate, device)
    trainer = Trainer(model, probe, None, train, optim, out_dir, ctx, config_dict=to_dict(cfg),
                      optimizer=build_optimizer(None, optim, _param_groups(model, cfg)),
                      # a chosen finetune layer leaves the layers above it without gradients
                      find_unused_parameters=featurizer.layer is not None and not featurizer.frozen)
    if resume and trainer.resume():
        log.info("resumed %s after epoch %d", out_dir, trainer.epoch)
    t_train = time.perf_counter()
    trainer.fit()  # resuming with more epochs or more patience continues a finished run
    train_seconds = time.perf_counter() - t_train

    # 5. test once, with the best dev weights
    best = trainer.load_best()
    test_metrics = evaluate(model, task, splits["test"], cfg, sample_rate, device) if test else {}
    weights = featurizer.layer_weights().tolist()
    result = DownstreamResult(out_dir, test_metrics, best["dev"], int(best["epoch"]), trainer.epoch, weights,
                              trainer.selection.history, cache_seconds, train_seconds, int(best["step"]), trainer.step)
    if ctx.is_main:
        _write_outputs(result, cfg, task)
    return result


def _write_outputs(res: DownstreamResult, cfg: DownstreamConfig, task: Task) -> None:
    info = {"task": cfg.task, "upstream": cfg.upstream, "mode": cfg.mode, "layer": cfg.layer, "head": task.head,
            "primary": task.primary, "test": res.test, "best_dev": res.best_dev, "best_epoch": res.best_epoch,
            "epochs_run": res.epochs_run, "best_step": res.best_step, "steps_run": res.steps_run,
            "layer_weights": res.layer_weights, "history": res.history,
            "cache_seconds": round(res.cache_seconds, 2), "train_seconds": round(res.train_seconds, 2)}
    atomic_write_bytes(res.out_dir / "results.json", json.dumps(info, indent=2).encode())
    if not cfg.plots:
        return
    if len(res.layer_weights) > 1 and (cfg.mode == "weighted-sum" or (cfg.mode == "finetune" and cfg.layer is None)):
        plot_layer_weights(res.layer_weights, res.out_dir / "layer_weights.png",
                           title=f"{cfg.task}: {Path(cfg.upstream).name} {cfg.mode}")
    if res.history:
        ep = [h["epoch"] for h in res.history]
        plot_learning_curves({f"dev {task.primary}": (ep, [h[f"dev_{task.primary}"] for h in res.history])},
                             res.out_dir / "learning_curve.png", task.primary,
                             title=f"{cfg.task}: {Path(cfg.upstream).name} {cfg.mode}")
