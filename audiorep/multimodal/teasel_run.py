"""TEASEL runs: LAA pretraining (masked LM, only the LAA trains) and sentiment fine-tuning (regression on <s>).

Both front ends are frozen, so their outputs are computed once per utterance and kept in memory; an epoch then
costs only the LAA and RoBERTa. Entry points: :func:`run_pretrain` and :func:`run_finetune` (config in,
results dict out, files under ``config.out_dir``).
"""

from __future__ import annotations

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

from .metrics import derangement, is_better, regression_metrics
from ..errors import ConfigError
from ..fileio import atomic_write_bytes
from .teasel import (
    LAAConfig,
    TeaselModel,
    UpstreamFrontEnd,
    Wav2Vec2CNNFrontEnd,
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

    With ``cfg.feature_cache`` and a ``cache_key`` (identifying the front end's weights), outputs are also
    stored as ``<feature_cache>/<cache_key>/<split>.safetensors`` and reused by later runs.
    """
    from safetensors.torch import load_file, save

    from ..audio import read_audio

    cache_file = Path(cfg.feature_cache) / cache_key / f"{split}.safetensors" if cfg.feature_cache and cache_key \
        else None
    if cache_file is not None and cache_file.is_file():
        stored = load_file(str(cache_file))
        if all(e.id in stored for e in examples):
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
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(cache_file, save({e.id: e.raw for e in examples}))


def front_end_key(cfg: TeaselRunConfig) -> str:
    """Identifies the front end's weights (and the audio cut) for the feature cache."""
    import hashlib

    ident = {"front_end": cfg.front_end, "max_audio_seconds": cfg.max_audio_seconds, "corpus": cfg.data}
    if cfg.front_end == "wav2vec2":
        ident.update(wav2vec2=cfg.wav2vec2, seed=None if cfg.wav2vec2 else FRONT_END_SEED, arch=cfg.wav2vec2_config)
    else:
        ident.update(upstream=cfg.upstream, pretrained=cfg.upstream_pretrained, layer=cfg.upstream_layer,
                     seed=FRONT_END_SEED)
        from ..models.foreign import split_source

        p = Path(split_source(cfg.upstream)[1]) / "model.safetensors"  # "hf:DIR" keys on DIR's weights too
        if p.is_file():
            ident["mtime"] = p.stat().st_mtime
    return hashlib.sha256(json.dumps(ident, sort_keys=True, default=str).encode()).hexdigest()[:12]


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
    import copy

    src = derangement(len(examples), seed)
    out = []
    for i, e in enumerate(examples):
        c = copy.copy(e)
        c.raw, c.states = examples[src[i]].raw, examples[src[i]].states
        out.append(c)
    return out


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
    layer = "weighted sum" if cfg.upstream_layer is None else f"layer {cfg.upstream_layer}"
    random_w = not cfg.upstream_pretrained and not Path(cfg.upstream).exists()
    label = f"audiorep upstream {cfg.upstream} ({'RANDOM-WEIGHT' if random_w else 'trained'}, {layer})"
    return UpstreamFrontEnd(up, cfg.upstream_layer), label


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


def set_modes(model: TeaselModel) -> None:
    """Train mode for modules with something trainable; eval (no dropout) for fully frozen ones."""
    model.train()
    for m in (model.roberta, model.lm_head, model.head, model.front_end):
        if m is not None and not any(p.requires_grad for p in m.parameters()):
            m.eval()


def make_optimizer(model: TeaselModel, lr: float, head_lr: float, weight_decay: float):
    """AdamW; no decay on biases and norms; the LM at ``lr``, LAA/head at ``head_lr``."""
    groups: dict[tuple[float, float], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        rate = lr if name.startswith(("roberta.", "lm_head.")) else head_lr
        decay = 0.0 if p.dim() < 2 or "norm" in name.lower() else weight_decay
        groups.setdefault((rate, decay), []).append(p)
    if not groups:
        raise ConfigError("nothing to train: every parameter is frozen by the configured parts")
    return torch.optim.AdamW([{"params": ps, "lr": r, "weight_decay": d} for (r, d), ps in groups.items()])


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _to(batch: dict[str, torch.Tensor], device: str) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}


def _write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2) + "\n").encode())


def _prepare(cfg: TeaselRunConfig, splits: Sequence[str], need_label: bool):
    """LM, tokenizer, front end and per-split examples with cached features."""
    _seed_all(cfg.seed)
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
    for split in splits:
        ex = load_examples(cfg, split, tok, need_label)
        if front_end is not None:
            attach_features(ex, cfg, front_end, split, cache_key=front_end_key(cfg))
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


def run_pretrain(cfg: TeaselRunConfig) -> dict[str, Any]:
    """LAA pretraining by masked LM on (speech, transcript) pairs; RoBERTa and the front end stay frozen.

    Writes ``laa-step<N>.safetensors`` every ``save_every`` steps, ``laa.safetensors`` at the end and
    ``pretrain_results.json``. Returns the results dict.
    """
    if not cfg.use_audio:
        raise ConfigError("LAA pretraining needs audio (use_audio must be true)")
    t_start = time.time()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tok, mlm_model, lm_dir, front_end, fe_label, data, feat_s = _prepare(
        cfg, [cfg.train_split, cfg.dev_split], need_label=False)
    model = build_model(cfg, mlm_model, front_end, "pretrain").to(cfg.device)
    train = data[cfg.train_split]
    steps_per_epoch = math.ceil(len(train) / cfg.batch_size)
    total = cfg.max_steps or cfg.epochs * steps_per_epoch
    opt = make_optimizer(model, cfg.lr, cfg.head_lr or cfg.lr, cfg.weight_decay)
    from transformers import get_cosine_schedule_with_warmup

    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    params = [p for p in model.parameters() if p.requires_grad]
    dev = data[cfg.dev_split]
    before = {"with_prefix": dev_mlm_loss(model, dev, tok, cfg, True), "text_only": dev_mlm_loss(model, dev, tok, cfg, False)}
    rng = random.Random(cfg.seed)
    g = torch.Generator().manual_seed(cfg.seed)
    step, history, checkpoints = 0, [], []
    while step < total:
        set_modes(model)
        for b in batches(train, cfg.batch_size, tok.pad_token_id, True, rng):
            ids, labels = mask_tokens(b["input_ids"], b["attention_mask"], tok.all_special_ids, tok.mask_token_id,
                                      len(tok), cfg.mlm_prob, g)
            b = _to(b, cfg.device)
            out = model(ids.to(cfg.device), b["attention_mask"], b["raw"], b["frame_lens"], mlm_labels=labels)
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            step += 1
            history.append(round(out.loss.item(), 4))
            if step % 25 == 0:
                log.info("step %d/%d: mlm loss %.4f", step, total, float(np.mean(history[-25:])))
            if step % cfg.save_every == 0 or step == total:
                ck = save_laa(model, out_dir / f"laa-step{step}.safetensors", {"step": step})
                checkpoints.append(str(ck))
            if step >= total:
                break
    final = save_laa(model, out_dir / "laa.safetensors", {"step": step, "lm": str(lm_dir), "front_end": fe_label})
    after = {"with_prefix": dev_mlm_loss(model, dev, tok, cfg, True), "text_only": dev_mlm_loss(model, dev, tok, cfg, False)}
    results = {
        "stage": "pretrain", "steps": step, "front_end": fe_label, "lm": str(lm_dir),
        "laa_parameters": count_parameters(model.laa),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "dev_mlm_loss_before": before, "dev_mlm_loss_after": after,
        "train_loss_first10": history[:10], "train_loss_last10": history[-10:],
        "checkpoints": checkpoints, "laa_checkpoint": str(final),
        "feature_seconds": round(feat_s, 1), "seconds": round(time.time() - t_start, 1),
        "config": cfg.to_dict(),
    }
    _write_json(out_dir / "pretrain_results.json", results)
    return results


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


def run_finetune(cfg: TeaselRunConfig) -> dict[str, Any]:
    """Sentiment regression (MSE on <s>) with MMSA metrics on dev each epoch; best-dev checkpoint; test once.

    ``use_audio=False`` gives the text-only RoBERTa baseline through the same code. Writes ``best.safetensors``
    and ``finetune_results.json`` under ``out_dir``; returns the results dict.
    """
    t_start = time.time()
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
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
    total = cfg.epochs * math.ceil(len(train) / cfg.batch_size)
    opt = make_optimizer(model, cfg.lr, cfg.head_lr or cfg.lr, cfg.weight_decay)
    from transformers import get_cosine_schedule_with_warmup

    sched = get_cosine_schedule_with_warmup(opt, int(cfg.warmup_ratio * total), total)
    params = [p for p in model.parameters() if p.requires_grad]
    rng = random.Random(cfg.seed)
    dev_labels = np.array([e.label for e in dev])
    best, best_epoch, history = None, -1, []
    best_path = out_dir / "best.safetensors"
    for epoch in range(1, cfg.epochs + 1):
        set_modes(model)
        losses = []
        for b in batches(train, cfg.batch_size, tok.pad_token_id, True, rng):
            b = _to(b, cfg.device)
            out = model(b["input_ids"], b["attention_mask"], b.get("raw"), b.get("frame_lens"), targets=b["targets"],
                        states=b.get("states"))
            opt.zero_grad(set_to_none=True)
            out.loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            opt.step()
            sched.step()
            losses.append(out.loss.item())
        m = regression_metrics(predict(model, dev, tok.pad_token_id, cfg), dev_labels, cfg.metrics)
        history.append({"epoch": epoch, "train_mse": float(np.mean(losses)), **{k: round(v, 4) for k, v in m.items()}})
        log.info("epoch %d: %s", epoch, history[-1])
        if is_better(cfg.select_metric, m[cfg.select_metric], best):
            best, best_epoch = m[cfg.select_metric], epoch
            _save_state(model, best_path, {"epoch": epoch, cfg.select_metric: best})
    _load_state(model, best_path)
    test_labels = np.array([e.label for e in test])
    test_m = regression_metrics(predict(model, test, tok.pad_token_id, cfg), test_labels, cfg.metrics)
    shuffled_m = None
    if cfg.use_audio:  # does the model use the audio? the same test texts, each with another utterance's speech
        shuffled_m = regression_metrics(predict(model, swap_audio(test), tok.pad_token_id, cfg), test_labels,
                                        cfg.metrics)
    results = {
        "stage": "finetune", "use_audio": cfg.use_audio, "front_end": fe_label, "lm": str(lm_dir),
        "laa_checkpoint": cfg.laa_checkpoint if cfg.use_audio else None, "laa_checkpoint_meta": laa_meta,
        "best_epoch": best_epoch, "select_metric": cfg.select_metric, "dev_history": history,
        "test": {k: round(v, 4) for k, v in test_m.items()},
        "test_audio_swapped": {k: round(v, 4) for k, v in shuffled_m.items()} if shuffled_m else None,
        "sizes": {"train": len(train), "dev": len(dev), "test": len(test)},
        "laa_parameters": count_parameters(model.laa), "lm_parameters": count_parameters(model.roberta),
        "trainable_parameters": count_parameters(model, trainable_only=True),
        "feature_seconds": round(feat_s, 1), "seconds": round(time.time() - t_start, 1),
        "config": cfg.to_dict(),
    }
    _write_json(out_dir / "finetune_results.json", results)
    return results


def _save_state(model: TeaselModel, path: Path, meta: dict[str, Any]) -> None:
    """Everything except the frozen front end's own weights, atomically (safetensors)."""
    from safetensors.torch import save

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()
             if not k.startswith(("front_end.upstream.", "front_end.feature_"))}
    atomic_write_bytes(path, save(state, metadata={"format": "audiorep-teasel", "meta": json.dumps(meta)}))


def _load_state(model: TeaselModel, path: Path) -> None:
    from safetensors.torch import load_file

    missing, unexpected = model.load_state_dict(load_file(str(path)), strict=False)
    bad = [k for k in missing if not k.startswith(("front_end.upstream.", "front_end.feature_"))]
    if bad or unexpected:
        raise ConfigError(f"{path}: checkpoint does not fit the model (missing {bad[:4]}, unexpected {unexpected[:4]})")
