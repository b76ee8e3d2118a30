"""Held-out reconstruction check: is the encoder using context, or only predicting a per-bin average?

A falling training loss does not say that. Under per-utterance CMVN, a model that ignores its context and
outputs a constant frame (roughly the per-bin median) already gets well below the untrained loss; that is
the first plateau of masked acoustic pretraining. This module scores a model on held-out utterances with
every span zeroed (no random/unchanged spans, so all scored frames are truly hidden) against two
context-free references computed on exactly the same frames:

- ``zero``: predict 0 for every hidden element (the CMVN mean);
- ``interpolation``: linear interpolation in time between the nearest unaltered frames on each side —
  what a model that has learned to look at its neighbours should beat.
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import torch

from ..audio import batch_waveforms, read_audio
from .loss import masked_error
from .masking import MaskingConfig, apply_plan, make_plan, utterance_keys


def _nearest_seen(hidden: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Index of the nearest visible frame at or before (-1: none) and at or after (T: none) each frame, (B, T) each."""
    B, T = hidden.shape
    t = torch.arange(T, device=hidden.device).expand(B, T)  # (B, T)
    seen = valid & ~hidden  # (B, T)
    prev = torch.where(seen, t, torch.full_like(t, -1)).cummax(dim=1).values  # (B, T) last seen index <= t
    nxt = torch.where(seen, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)  # (B, T) first >= t
    return prev, nxt


def distance_to_visible(hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Frames from each frame to the nearest visible frame of its utterance, (B, T) long; 0 for visible
    frames, T for an utterance with no visible frame."""
    T = hidden.shape[1]
    prev, nxt = _nearest_seen(hidden, valid)
    t = torch.arange(T, device=hidden.device)  # (T,)
    before = torch.where(prev >= 0, t - prev, torch.full_like(prev, T))  # (B, T)
    after = torch.where(nxt < T, nxt - t, torch.full_like(nxt, T))  # (B, T)
    return torch.minimum(before, after)


def interpolate_hidden(feats: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Fill hidden frames by linear interpolation between the nearest visible frames in time.

    feats (B, T, D); hidden, valid (B, T) bool. A hidden frame with a visible frame on one side only copies
    that frame; an utterance with no visible frame gets zeros. Visible and padded frames are returned as is.
    """
    B, T, D = feats.shape
    t = torch.arange(T, device=feats.device).expand(B, T)  # (B, T)
    prev, nxt = _nearest_seen(hidden, valid)
    has_prev, has_next = prev >= 0, nxt < T
    lo = torch.where(has_prev, prev, nxt).clamp(0, T - 1)  # (B, T)
    hi = torch.where(has_next, nxt, prev).clamp(0, T - 1)  # (B, T)
    span = (hi - lo).clamp_min(1).to(feats.dtype)
    w = ((t - lo).to(feats.dtype) / span).clamp(0, 1)[..., None]  # (B, T, 1); 0 when lo == hi
    gather = lambda idx: feats.gather(1, idx[..., None].expand(B, T, D))  # noqa: E731  (B, T, D)
    filled = (1 - w) * gather(lo) + w * gather(hi)  # (B, T, D)
    filled = torch.where((has_prev | has_next)[..., None], filled, torch.zeros_like(filled))
    return torch.where((hidden & valid)[..., None], filled, feats)


def attended_distance(encoder, hidden_states: Sequence[torch.Tensor], lengths: torch.Tensor,
                      queries: torch.Tensor) -> list[tuple[float, float]]:
    """Per layer: (sum over ``queries`` of the expected |query - key| distance in frames, number of queries).

    ``hidden_states`` are the encoder's outputs (layer i's input is ``hidden_states[i]``); ``queries`` (B, T)
    bool picks the query frames counted; each head counts equally. A layer that rebuilds a hidden frame from
    its neighbours attends a few frames away; one that has not learned to look at context spreads over the
    whole utterance (about T/3) or sits on itself (0).
    """
    T = hidden_states[0].shape[1]
    t = torch.arange(T, device=lengths.device)
    dist = (t[:, None] - t[None, :]).abs().float()  # (T, T)
    n = float(queries.sum())
    out = []
    for probs in encoder.attention_probabilities(hidden_states, lengths):  # (B, nh, T, T) per layer
        per_query = (probs * dist).sum(-1).mean(1)  # (B, T) expected distance, mean over heads
        out.append((float(per_query[queries].sum()), n))
    return out


DISTANCE_BUCKETS = 5  # hidden frames 1, 2, 3, 4 and >= 5 frames from the nearest visible one


@torch.no_grad()
def reconstruction_report(model, paths: Sequence[str], ids: Sequence[str], masking: MaskingConfig,
                          seed: int = 0, batch_size: int = 8, max_seconds: float | None = None) -> dict:
    """Held-out reconstruction: the model vs ``zero`` vs ``interpolation``, and where the model looks.

    ``model`` is a :class:`~audiorep.pretrain.model.MaskedAcousticModel` (encoder + head). The alteration
    is ``masking`` with every span zeroed, keyed by utterance id and ``seed``, so two models scored with the
    same arguments see identical inputs. Frequency/noise alteration is switched off: the question here is
    whether hidden *frames* are rebuilt from context.

    Returns the mean loss (``model.loss``: L1 or MSE) over hidden elements for each predictor; the same split
    by the hidden frame's distance to the nearest visible frame (``by_distance``: "1" .. "4", "5+"); and per
    layer the mean attended distance in frames over all valid query frames and over hidden ones
    (``attention_distance``).
    """
    mcfg = dataclasses.replace(masking, zero_prob=1.0, random_prob=0.0, freq_proportion=0.0, noise_proportion=0.0)
    was_training = model.training
    model.eval()
    sr = model.encoder.feature_config.sample_rate
    sums: dict[str, float] = {}
    by_dist: dict[str, list[float]] = {}  # predictor -> error sum per distance bucket
    bucket_n = [0.0] * DISTANCE_BUCKETS  # hidden elements per bucket
    attn_all: list[list[float]] = []  # per layer [distance sum, queries]
    attn_hidden: list[list[float]] = []
    count = 0.0
    dev = next(model.parameters()).device
    for start in range(0, len(paths), batch_size):
        wavs = []
        for p in paths[start:start + batch_size]:
            w, _ = read_audio(p, sr)
            w = w.reshape(-1)
            wavs.append(w[: int(max_seconds * sr)] if max_seconds else w)
        W, lens = batch_waveforms(wavs)  # (B, S), (B,)
        W, lens = W.to(dev), lens.to(dev)
        feats, targets, flens = model.features(W, lens)  # (B, T, D), (B, T, D'), (B,)
        keys = utterance_keys(list(ids[start:start + batch_size]), seed, 0, dev)
        plan = make_plan(flens, feats.shape[1], feats.shape[2], mcfg, keys)
        mask = plan.loss_mask(model.target_dim, dtype=torch.float32)  # (B, T, D')
        n = float(mask.sum())
        if n == 0:
            continue
        out = model.encoder.encode(apply_plan(feats, plan), flens)
        pred = model.head(out.last_hidden_state)  # (B, T, D')
        refs = {"model": pred, "zero": torch.zeros_like(targets)}
        if targets.shape == feats.shape:
            refs["interpolation"] = interpolate_hidden(targets, plan.time_mask, plan.valid)
        hidden = plan.time_mask & plan.valid  # (B, T)
        bucket = distance_to_visible(plan.time_mask, plan.valid).clamp(1, DISTANCE_BUCKETS) - 1  # (B, T)
        frame_mask = mask.mean(-1)  # (B, T): 1 on hidden frames (time alteration only here)
        for b in range(DISTANCE_BUCKETS):
            bucket_n[b] += float((frame_mask * (bucket == b)).sum()) * mask.shape[-1]
        for k, v in refs.items():
            per_frame = masked_error(v, targets, mask, model.loss).sum(-1)  # (B, T) error summed over bins
            sums[k] = sums.get(k, 0.0) + float(per_frame.sum())  # the masked loss sum, computed once
            acc = by_dist.setdefault(k, [0.0] * DISTANCE_BUCKETS)
            for b in range(DISTANCE_BUCKETS):
                acc[b] += float(per_frame[bucket == b].sum())
        valid = plan.valid  # (B, T)
        for store, queries in ((attn_all, valid), (attn_hidden, hidden)):
            for i, (d, q) in enumerate(attended_distance(model.encoder, out.hidden_states, flens, queries)):
                if len(store) <= i:
                    store.append([0.0, 0.0])
                store[i][0] += d
                store[i][1] += q
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("reconstruction_report: no utterance was long enough to hide a span")
    rep: dict = {k: v / count for k, v in sums.items()}  # no interpolation row for another target front end
    names = [str(b + 1) for b in range(DISTANCE_BUCKETS - 1)] + [f"{DISTANCE_BUCKETS}+"]
    rep["by_distance"] = {
        name: {"fraction": bucket_n[b] / count, **{k: v[b] / bucket_n[b] for k, v in by_dist.items()}}
        for b, name in enumerate(names) if bucket_n[b] > 0
    }
    rep["attention_distance"] = {
        "all_frames": [d / max(q, 1.0) for d, q in attn_all],
        "hidden_frames": [d / max(q, 1.0) for d, q in attn_hidden],
    }
    rep["utterances"] = len(paths)
    rep["hidden_elements"] = int(count)
    return rep
