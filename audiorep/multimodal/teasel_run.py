"""TEASEL runs: LAA pretraining (masked LM, only the LAA trains) and sentiment fine-tuning (regression on <s>).

Both front ends are frozen, so their outputs are computed once per utterance and kept in memory; an epoch then
costs only the LAA and RoBERTa. Entry points: :func:`run_pretrain` and :func:`run_finetune` (config in,
results dict out, files under ``config.out_dir``). Both train on :class:`audiorep.train.Trainer`, with
:class:`LAAPretrainTask` and :class:`FinetuneTask`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..scoring import regression_metrics, swapped_audio
from ..errors import ConfigError
from ..locking import lock_run_folder
from ..ownership import check_output_dir, claim_new
from ..models.wav2vec2 import Wav2Vec2CNNFrontEnd
from ..fileio import atomic_write_bytes
from ..train.rng import seed_everything
from ..train.distributed import DistContext
from ..train.optim import OptimConfig, build_optimizer, param_groups
from ..train.task import TrainableState, TrainTask
from ..train.trainer import TrainConfig, Trainer
from .teasel import (
    LAAConfig,
    TeaselModel,
    UpstreamFrontEnd,
    count_parameters,
    load_laa,
    mask_tokens,
    save_laa,
)
from .teasel_config import TeaselRunConfig
from .lm import ensure_lm

log = logging.getLogger(__name__)

# A random-init front end (no wav2vec2 checkpoint, or upstream_pretrained=false) is drawn from this seed, not the
# run's: it is part of the fixed front end, so an LAA pretrained on it still fits when fine-tuning with seed 1, 2...
FRONT_END_SEED = 0


# ---------------------------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Example:
    id: str
    text: str
    label: float
    input_ids: list[int]  # <s> ... </s>, at most max_text_tokens
    raw: torch.Tensor | None = None  # frozen front-end output (T, D) or (K, T, D), no padding
    states: torch.Tensor | None = None  # LAA GRU states (T, 2H) when the trunk is frozen; replaces raw


def _utterances(cfg: TeaselRunConfig, split: str):
    from ..data import get_corpus

    return get_corpus(cfg.data).manifest(split)


def load_examples(cfg: TeaselRunConfig, split: str, tokenizer, need_label: bool = True) -> list[Example]:
    """A split's utterances -> tokenised examples; ConfigError naming the utterance with no text/label."""
    out = []
    for u in _utterances(cfg, split):
        if not u.text.strip():
            raise ConfigError(f"{u.path} ({u.id}): TEASEL needs a transcript; the manifest row has no 'text'")
        label = u.labels.get(cfg.label_key)
        if need_label and not isinstance(label, (int, float)):
            raise ConfigError(f"{u.path} ({u.id}): no numeric labels[{cfg.label_key!r}] in the manifest row")
        ids = tokenizer(u.text, truncation=True, max_length=cfg.max_text_tokens)["input_ids"]
        out.append(Example(u.id, u.text, float(label or 0.0), ids))
    if not out:
        raise ConfigError(f"data {cfg.data!r}: split {split!r} is empty")
    return out


def attach_features(examples: Sequence[Example], cfg: TeaselRunConfig, front_end: nn.Module, split: str,
                    batch_size: int = 8, cache_key: str | None = None) -> None:
    """Compute each utterance's frozen front-end output once (batched by length) and keep it on the example.

    With ``cfg.feature_cache`` and a ``cache_key`` (:func:`front_end_key`), outputs are also stored under
    ``feature_cache`` (``audiorep.probe.cache``) and reused by later runs.
    """
    from ..audio import read_audio
    from ..probe.cache import cache_file, load_features, save_features

    path = cache_file(cfg.feature_cache, split, cache_key) if cfg.feature_cache and cache_key else None
    stored = load_features(path, [e.id for e in examples])
    if stored is not None:
        for e in examples:
            e.raw = stored[e.id]
        return
    utts = {u.id: u for u in _utterances(cfg, split)}
    sr = int(front_end.sample_rate)
    max_samples = int(cfg.max_audio_seconds * sr)
    order = sorted(range(len(examples)), key=lambda i: utts[examples[i].id].num_samples)
    half = isinstance(front_end, UpstreamFrontEnd) and front_end.layer is None  # (K, T, H) per utt: keep fp16
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        wavs = [read_audio(utts[examples[i].id].path, sr)[0][:max_samples] for i in idx]
        raw, lens = front_end.frozen_features([w.to(cfg.device) for w in wavs])
        for j, i in enumerate(idx):
            r = raw[j, ..., : int(lens[j]), :].cpu().contiguous()
            examples[i].raw = r.half() if half else r
    save_features(path, {e.id: e.raw for e in examples})


def front_end_key(cfg: TeaselRunConfig, front_end: nn.Module) -> str:
    """Names the frozen front end's outputs for the feature cache: its weights, layer choice and the audio cut."""
    from ..probe.cache import feature_cache_key

    return feature_cache_key(front_end, front_end=cfg.front_end, layer=getattr(front_end, "layer", None),
                             max_audio_seconds=cfg.max_audio_seconds, corpus=cfg.data)


def collate(batch: Sequence[Example], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad token ids (B, L) and, when present, frozen features (B, T, D) / (B, K, T, D) with lengths."""
    L = max(len(e.input_ids) for e in batch)
    ids = torch.full((len(batch), L), pad_id, dtype=torch.long)
    for i, e in enumerate(batch):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
    out = {"input_ids": ids, "attention_mask": (ids != pad_id).long(),
           "targets": torch.tensor([e.label for e in batch], dtype=torch.float32)}
    for key in ("states", "raw"):  # the frames the model needs: precomputed GRU states, else front-end output
        xs = [getattr(e, key) for e in batch]
        if xs[0] is None:
            continue
        T = max(x.shape[-2] for x in xs)
        padded = torch.zeros((len(xs),) + tuple(xs[0].shape[:-2]) + (T, xs[0].shape[-1]), dtype=torch.float32)
        for i, x in enumerate(xs):
            padded[i, ..., : x.shape[-2], :] = x.float()  # (B, [K,] T, D)
        out[key] = padded
        out["frame_lens"] = torch.tensor([x.shape[-2] for x in xs], dtype=torch.long)
        break
    return out


@torch.no_grad()
def attach_trunk_states(model: TeaselModel, examples: Sequence[Example], cfg: TeaselRunConfig,
                        batch_size: int = 16) -> None:
    """Replace each example's front-end output by its LAA GRU states, computed once (frozen trunk only).

    Fine-tuning in the paper's setting trains the aggregation but not the BiGRU, so the GRU would otherwise
    recompute the same states every epoch; this makes an epoch cost about as much as text-only fine-tuning.
    """
    if not model.trunk_frozen:
        raise ConfigError("attach_trunk_states: the LAA trunk (front end / projection / BiGRU) trains")
    was_training = model.training
    model.eval()
    order = sorted(range(len(examples)), key=lambda i: examples[i].raw.shape[-2])  # similar lengths together
    for s in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[s : s + batch_size]]
        b = _to(collate(chunk, pad_id=0), cfg.device)
        states = model.trunk_states(b["raw"], b["frame_lens"])  # (b, T, 2H)
        for j, e in enumerate(chunk):
            e.states = states[j, : int(b["frame_lens"][j])].cpu().contiguous()
            e.raw = None
    model.train(was_training)


def swap_audio(examples: Sequence[Example], seed: int = 0) -> list[Example]:
    """Copies of ``examples`` whose speech (frames or GRU states) comes from another example (a derangement).
    Scoring these measures how much a model uses the audio."""
    speech = swapped_audio([(e.raw, e.states) for e in examples], seed)
    return [dataclasses.replace(e, raw=raw, states=states) for e, (raw, states) in zip(examples, speech)]


def batches(examples: Sequence[Example], batch_size: int, pad_id: int, shuffle: bool, rng: random.Random):
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    for s in range(0, len(order), batch_size):
        yield collate([examples[i] for i in order[s : s + batch_size]], pad_id)


# ---------------------------------------------------------------------------------------------------------------
# building
# ---------------------------------------------------------------------------------------------------------------


def build_front_end(cfg: TeaselRunConfig) -> tuple[nn.Module, str]:
    """The configured frozen speech front end and a label saying what it is (random weights are labelled)."""
    if cfg.front_end == "wav2vec2":
        source = cfg.wav2vec2
        if source is None and cfg.wav2vec2_config:
            from transformers import Wav2Vec2Config

            source = Wav2Vec2Config(**cfg.wav2vec2_config)
        fe = Wav2Vec2CNNFrontEnd(source)
        arch = f", {cfg.wav2vec2_config}" if cfg.wav2vec2_config and not fe.pretrained else ""
        label = f"wav2vec2 CNN+projection ({'pretrained ' + fe.source if fe.pretrained else 'RANDOM-INIT'}{arch})"
        return fe, label
    import audiorep

    up = audiorep.load(cfg.upstream, pretrained=cfg.upstream_pretrained)
    layer = "weighted sum" if cfg.layer is None else f"layer {cfg.layer}"
    random_w = not cfg.upstream_pretrained and not Path(cfg.upstream).exists()
    label = f"audiorep upstream {cfg.upstream} ({'RANDOM-WEIGHT' if random_w else 'trained'}, {layer})"
    return UpstreamFrontEnd(up, cfg.layer), label


def build_model(cfg: TeaselRunConfig, mlm_model, front_end: nn.Module | None, stage: str) -> TeaselModel:
    """RoBERTa (+ LAA on ``front_end``) with the stage's head, trainable parts set from the config."""
    laa_cfg = LAAConfig.from_dict(cfg.laa) if cfg.laa else LAAConfig()
    torch.manual_seed(cfg.seed + 1)  # LAA / head init independent of what ran before
    if stage == "pretrain":
        model = TeaselModel(mlm_model.roberta, front_end, laa_cfg, lm_head=mlm_model.lm_head)
        model.set_trainable(cfg.pretrain_parts)
    elif stage == "finetune":
        model = TeaselModel(mlm_model.roberta, front_end, laa_cfg, regression=True)
        model.set_trainable(cfg.finetune_parts)
    else:
        raise ConfigError(f"unknown TEASEL stage {stage!r}")
    return model


class Trainee(TrainableState, nn.Module):
    """The TEASEL model as the Trainer sees it: ``train()`` leaves fully frozen parts (a frozen LM, the front end)
    in eval mode, so no dropout runs where nothing learns; best-weight snapshots leave out the frozen front end's
    own weights."""

    def __init__(self, model: TeaselModel):
        super().__init__()
        self.model = model

    def train(self, mode: bool = True) -> "Trainee":
        super().train(mode)
        if mode:
            for m in (self.model.roberta, self.model.lm_head, self.model.head, self.model.front_end):
                if m is not None and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self

    def forward(self, **batch: torch.Tensor):
        return self.model(**batch)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        return _kept_state(self.model)

    def load_trainable(self, state: dict[str, torch.Tensor], source: str) -> None:
        _load_kept_state(self.model, state, source)


def optimizer_groups(model: TeaselModel, cfg: TeaselRunConfig) -> list[dict]:
    """The LM (RoBERTa and its MLM head) at ``lr``; the rest (LAA, regression head, front-end layer weights) at
    ``head_lr``; no weight decay on biases and norms."""
    lm = nn.ModuleList([m for m in (model.roberta, model.lm_head) if m is not None])
    rest = nn.ModuleList([m for name, m in model.named_children() if name not in ("roberta", "lm_head")])
    return (param_groups(lm, cfg.weight_decay, lr=cfg.lr)
            + param_groups(rest, cfg.weight_decay, lr=cfg.head_lr or cfg.lr))


def build_trainer(model: TeaselModel, task: Any, cfg: TeaselRunConfig, **train: Any) -> Trainer:
    """The shared Trainer over ``task``: AdamW on :func:`optimizer_groups`, Hugging Face's cosine schedule with
    linear warm-up, clipping at ``grad_clip``, fp32; ``train``: the budget and selection (TrainConfig fields)."""
    optim = OptimConfig(lr=cfg.lr, weight_decay=cfg.weight_decay, warmup_ratio=cfg.warmup_ratio, schedule="cosine",
                        grad_clip=cfg.grad_clip)
    device = torch.device(cfg.device)
    run = TrainConfig(seed=cfg.seed, precision="fp32", device=cfg.device, **train)
    return Trainer(Trainee(model), task, None, run, optim, None, DistContext(device=device),
                   config_dict=cfg.to_dict(), optimizer=build_optimizer(None, optim, optimizer_groups(model, cfg)))


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _write_results(path: Path, results: dict[str, Any], cfg: TeaselRunConfig, feat_s: float,
                   t_start: float) -> dict[str, Any]:
    """``results`` + the feature / total seconds and the config, written to ``path`` as JSON (atomically)."""
    results.update(feature_seconds=round(feat_s, 1), seconds=round(time.time() - t_start, 1), config=cfg.to_dict())
    atomic_write_bytes(path, (json.dumps(results, indent=2) + "\n").encode())
    return results


def _prepare(cfg: TeaselRunConfig, splits: Sequence[str], need_label: bool):
    """LM, tokenizer, front end and per-split examples with cached features."""
    seed_everything(cfg.seed)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    from ..data import get_corpus

    train_texts = [u.text for u in get_corpus(cfg.data).manifest(cfg.train_split) if u.text.strip()]
    tok, mlm_model, lm_dir = ensure_lm(cfg.text_model_folder, train_texts, cfg.small_lm, cfg.device)
    torch.manual_seed(FRONT_END_SEED)  # the same random front end for every run seed (see FRONT_END_SEED)
    front_end, fe_label = (build_front_end(cfg) if cfg.use_audio else (None, "none (text-only)"))
    if front_end is not None:
        front_end.to(cfg.device)
    data = {}
    t0 = time.time()
    key = front_end_key(cfg, front_end) if front_end is not None and cfg.feature_cache else None
    for split in splits:
        ex = load_examples(cfg, split, tok, need_label)
        if front_end is not None:
            attach_features(ex, cfg, front_end, split, cache_key=key)
        data[split] = ex
    log.info("features for %s in %.1f s", list(splits), time.time() - t0)
    return tok, mlm_model, lm_dir, front_end, fe_label, data, time.time() - t0


# ---------------------------------------------------------------------------------------------------------------
# LAA pretraining
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def dev_mlm_loss(model: TeaselModel, examples: Sequence[Example], tok, cfg: TeaselRunConfig,
                 use_prefix: bool = True) -> float:
    """Mean MLM loss on ``examples`` with a fixed masking seed; ``use_prefix=False`` scores the text-only LM."""
    model.eval()
    g = torch.Generator().manual_seed(1234)
    total, n = 0.0, 0
    for b in batches(examples, cfg.batch_size, tok.pad_token_id, False, random.Random(0)):
        ids, labels = mask_tokens(b["input_ids"], b["attention_mask"], tok.all_special_ids, tok.mask_token_id,
                                  len(tok), cfg.mlm_prob, g)
        b = _to(b, cfg.device)
        prefix = model.speech_prefix(b["raw"], b["frame_lens"]).prefix if use_prefix else None
        hidden, _ = model.encode(ids.to(cfg.device), b["attention_mask"], prefix)
        P = 0 if prefix is None else prefix.shape[1]
        logits = model.lm_head(torch.cat([hidden[:, :1], hidden[:, 1 + P :]], dim=1))  # (B, L, V)
        k = int((labels != -100).sum())
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float().cpu(),
                                             labels.reshape(-1), ignore_index=-100, reduction="sum").item()
        n += k
    return total / max(n, 1)


class LAAPretrainTask(TrainTask):
    """LAA pretraining as a :class:`~audiorep.train.Trainer` task: a seeded shuffle of the (speech, transcript)
    pairs per pass, BERT masking drawn from the task's own generator batch by batch; the MLM loss (a token mean
    per batch). ``evaluate``: the dev MLM loss with and without the speech prefix (fixed masking)."""

    name = "TEASEL LAA pretraining"  # progress bar and logs
    log_metrics = ["loss", "text_only_loss"]

    def __init__(self, model: TeaselModel, train: Sequence[Example], dev: Sequence[Example], tok,
                 cfg: TeaselRunConfig):
        self.model, self.train, self.dev, self.tok, self.cfg = model, train, dev, tok, cfg
        self.rng = random.Random(cfg.seed)  # batch order
        self.generator = torch.Generator().manual_seed(cfg.seed)  # which tokens are masked

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.batch_size)

    def train_batches(self, epoch: int, rank: int, world: int):
        tok = self.tok
        for b in batches(self.train, self.cfg.batch_size, tok.pad_token_id, True, self.rng):
            b["input_ids"], b["mlm_labels"] = mask_tokens(b["input_ids"], b["attention_mask"], tok.all_special_ids,
                                                          tok.mask_token_id, len(tok), self.cfg.mlm_prob,
                                                          self.generator)
            yield b

    def prepare(self, b: dict[str, torch.Tensor], step: int, device: torch.device):
        keys = ("input_ids", "attention_mask", "raw", "frame_lens", "mlm_labels")
        return {k: b[k].to(device) for k in keys}, 1.0, int(b["frame_lens"].sum())  # a batch mean: count 1

    def forward(self, runner: nn.Module, b: dict[str, torch.Tensor]):
        out = runner(**b)
        return out.loss, out.loss.detach()

    def evaluate(self) -> dict[str, float]:
        return {"loss": dev_mlm_loss(self.model, self.dev, self.tok, self.cfg, True),
                "text_only_loss": dev_mlm_loss(self.model, self.dev, self.tok, self.cfg, False)}


def run_pretrain(cfg: TeaselRunConfig) -> dict[str, Any]:
    """LAA pretraining by masked LM on (speech, transcript) pairs; RoBERTa and the front end stay frozen.

    ``max_steps`` steps, else ``epochs`` passes. Writes ``laa-step<N>.safetensors`` every ``save_every`` steps,
    ``laa.safetensors`` at the end and ``pretrain_results.json``. Returns the results dict.
    """
    check_output_dir(Path(cfg.out_dir), "out_dir")
    with lock_run_folder(cfg.out_dir):  # two runs into one folder would interleave their files
        return _pretrain(cfg)


def _pretrain(cfg: TeaselRunConfig) -> dict[str, Any]:
    if not cfg.use_audio:
        raise ConfigError("LAA pretraining needs audio (use_audio must be true)")
    t_start = time.time()
    out_dir = Path(cfg.out_dir)
    claim_new(out_dir, ["laa.safetensors", "pretrain_results.json"], replace=True)  # a user's file: refused now
    tok, mlm_model, lm_dir, front_end, fe_label, data, feat_s = _prepare(
        cfg, [cfg.train_split, cfg.dev_split], need_label=False)
    model = build_model(cfg, mlm_model, front_end, "pretrain").to(cfg.device)
    task = LAAPretrainTask(model, data[cfg.train_split], data[cfg.dev_split], tok, cfg)
    total = cfg.max_steps or cfg.epochs * task.steps_per_epoch()
    trainer = build_trainer(model, task, cfg, max_steps=total)
    dev = task.evaluate()
    before = {"with_prefix": dev["loss"], "text_only": dev["text_only_loss"]}
    history: list[float] = []
    checkpoints: list[str] = []

    def after_step(entry) -> None:
        history.append(round(entry.loss, 4))
        if entry.step % 25 == 0:
            log.info("%s step %d/%d: mlm loss %.4f", task.name, entry.step, total, float(np.mean(history[-25:])))
        if entry.step % cfg.save_every == 0 or entry.step == total:
            checkpoints.append(str(save_laa(model, out_dir / f"laa-step{entry.step}.safetensors",
                                            {"step": entry.step})))

    trainer.fit(on_log=after_step)
    step = trainer.step
    final = save_laa(model, out_dir / "laa.safetensors", {"step": step, "lm": str(lm_dir), "front_end": fe_label})
    dev = task.evaluate()
    after = {"with_prefix": dev["loss"], "text_only": dev["text_only_loss"]}
    results = {
        "stage": "pretrain", "steps": step, "front_end": fe_label, "lm": str(lm_dir),
        "laa_parameters": count_parameters(model.laa),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "dev_mlm_loss_before": before, "dev_mlm_loss_after": after,
        "train_loss_first10": history[:10], "train_loss_last10": history[-10:],
        "checkpoints": checkpoints, "laa_checkpoint": str(final),
    }
    return _write_results(out_dir / "pretrain_results.json", results, cfg, feat_s, t_start)


# ---------------------------------------------------------------------------------------------------------------
# fine-tuning
# ---------------------------------------------------------------------------------------------------------------


@torch.no_grad()
def predict(model: TeaselModel, examples: Sequence[Example], pad_id: int, cfg: TeaselRunConfig) -> np.ndarray:
    model.eval()
    preds = []
    for b in batches(examples, cfg.batch_size, pad_id, False, random.Random(0)):
        b = _to(b, cfg.device)
        out = model(b["input_ids"], b["attention_mask"], b.get("raw"), b.get("frame_lens"), states=b.get("states"))
        preds.append(out.prediction.float().cpu())
    return torch.cat(preds).numpy()


class FinetuneTask(TrainTask):
    """Sentiment fine-tuning as a :class:`~audiorep.train.Trainer` task: a seeded shuffle of the training
    examples per epoch, MSE on ``<s>`` (a batch mean); ``evaluate``: MMSA metrics on dev, one ``dev_history``
    row per epoch (with the epoch's mean training MSE)."""

    name = "TEASEL fine-tuning"  # progress bar and logs
    log_metrics = ["MAE", "Corr"]

    def __init__(self, model: TeaselModel, train: Sequence[Example], dev: Sequence[Example], pad_id: int,
                 cfg: TeaselRunConfig):
        self.model, self.train, self.dev, self.pad_id, self.cfg = model, train, dev, pad_id, cfg
        self.rng = random.Random(cfg.seed)  # batch order
        self.dev_labels = np.array([e.label for e in dev])
        self.losses: list[float] = []  # this epoch's training MSEs
        self.history: list[dict[str, Any]] = []  # one row per dev evaluation

    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.train) / self.cfg.batch_size)

    def train_batches(self, epoch: int, rank: int, world: int):
        return batches(self.train, self.cfg.batch_size, self.pad_id, True, self.rng)

    def prepare(self, b: dict[str, torch.Tensor], step: int, device: torch.device):
        frames = b["frame_lens"].sum() if "frame_lens" in b else b["attention_mask"].sum()  # speech, else tokens
        return _to(b, device), 1.0, frames  # the MSE is a batch mean: one count per batch

    def forward(self, runner: nn.Module, b: dict[str, torch.Tensor]):
        out = runner(**b)
        return out.loss, out.loss.detach()

    def after_step(self, outputs: list[torch.Tensor], batches: list[dict], epoch: int) -> None:
        self.losses.extend(x.item() for x in outputs)

    def evaluate(self) -> dict[str, float]:
        m = regression_metrics(predict(self.model, self.dev, self.pad_id, self.cfg), self.dev_labels, self.cfg.metrics)
        self.history.append({"epoch": len(self.history) + 1, "train_mse": float(np.mean(self.losses)),
                             **{k: round(v, 4) for k, v in m.items()}})
        self.losses = []
        log.info("%s epoch %d: %s", self.name, len(self.history), self.history[-1])
        return m


def run_finetune(cfg: TeaselRunConfig) -> dict[str, Any]:
    """Sentiment regression (MSE on <s>) with MMSA metrics on dev each epoch; the best dev ``select_metric``
    weights are scored on test once, and again with each test utterance's speech swapped for another's.

    ``use_audio=False`` gives the text-only RoBERTa baseline through the same code. Writes ``best.safetensors``
    and ``finetune_results.json`` under ``out_dir``; returns the results dict.
    """
    if cfg.max_steps is not None:  # a setting this stage would not honour is refused, not ignored
        raise ConfigError(f"max_steps={cfg.max_steps}: fine-tuning runs epochs={cfg.epochs} passes with dev "
                          "selection each epoch; max_steps is LAA pretraining's budget. Set epochs=N instead")
    check_output_dir(Path(cfg.out_dir), "out_dir")
    with lock_run_folder(cfg.out_dir):  # two runs into one folder would interleave their files
        return _finetune(cfg)


def _finetune(cfg: TeaselRunConfig) -> dict[str, Any]:
    t_start = time.time()
    out_dir = Path(cfg.out_dir)
    claim_new(out_dir, ["best.safetensors", "finetune_results.json"], replace=True)  # a user's file: refused now
    tok, mlm_model, lm_dir, front_end, fe_label, data, feat_s = _prepare(
        cfg, [cfg.train_split, cfg.dev_split, cfg.test_split], need_label=True)
    model = build_model(cfg, mlm_model, front_end, "finetune")
    laa_meta = None
    if cfg.use_audio and cfg.laa_checkpoint:
        laa_meta = load_laa(model, cfg.laa_checkpoint)
    model.to(cfg.device)
    train, dev, test = data[cfg.train_split], data[cfg.dev_split], data[cfg.test_split]
    if model.trunk_frozen:  # the paper's setting: GRU states are fixed, compute them once
        t0 = time.time()
        for split in (train, dev, test):
            attach_trunk_states(model, split, cfg)
        feat_s += time.time() - t0
    task = FinetuneTask(model, train, dev, tok.pad_token_id, cfg)
    trainer = build_trainer(model, task, cfg, epochs=cfg.epochs, select_metric=cfg.select_metric)
    trainer.fit()
    best_epoch, best = -1, None
    if trainer.best_state is not None:
        trainer.load_best()
        best_epoch, best = trainer.selection.best_epoch, trainer.selection.best
    else:  # every dev score was NaN (e.g. constant predictions under Corr): the last weights are scored
        log.warning("%s: no dev %s was a number; testing the last epoch's weights", task.name, cfg.select_metric)
    _save_state(model, out_dir / "best.safetensors", {"epoch": best_epoch, cfg.select_metric: best})
    test_labels = np.array([e.label for e in test])
    test_m = regression_metrics(predict(model, test, tok.pad_token_id, cfg), test_labels, cfg.metrics)
    shuffled_m = None
    if cfg.use_audio:  # does the model use the audio? the same test texts, each with another utterance's speech
        shuffled_m = regression_metrics(predict(model, swap_audio(test), tok.pad_token_id, cfg), test_labels,
                                        cfg.metrics)
    results = {
        "stage": "finetune", "use_audio": cfg.use_audio, "front_end": fe_label, "lm": str(lm_dir),
        "laa_checkpoint": cfg.laa_checkpoint if cfg.use_audio else None, "laa_checkpoint_meta": laa_meta,
        "best_epoch": best_epoch, "select_metric": cfg.select_metric, "dev_history": task.history,
        "test": {k: round(v, 4) for k, v in test_m.items()},
        "test_audio_swapped": {k: round(v, 4) for k, v in shuffled_m.items()} if shuffled_m else None,
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "laa_parameters": count_parameters(model.laa), "lm_parameters": count_parameters(model.roberta),
        "trainable_parameters": count_parameters(model, trainable_only=True),
    }
    return _write_results(out_dir / "finetune_results.json", results, cfg, feat_s, t_start)


# the frozen front end's own weights: never trained, so never saved with the run's weights
FROZEN_FRONT_END = ("front_end.upstream.", "front_end.feature_")


def _kept_state(model: TeaselModel) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith(FROZEN_FRONT_END)}


def _load_kept_state(model: TeaselModel, state: dict[str, torch.Tensor], source: str) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    bad = [k for k in missing if not k.startswith(FROZEN_FRONT_END)]
    if bad or unexpected:
        raise ConfigError(f"{source}: checkpoint does not fit the model (missing {bad[:4]}, unexpected {unexpected[:4]})")


def _save_state(model: TeaselModel, path: Path, meta: dict[str, Any]) -> None:
    """Everything except the frozen front end's own weights, atomically (safetensors)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in _kept_state(model).items()}
    atomic_write_bytes(path, save(state, metadata={"format": "audiorep-teasel", "meta": json.dumps(meta)}))

