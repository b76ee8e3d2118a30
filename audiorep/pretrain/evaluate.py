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
from .loss import masked_reconstruction_loss
from .masking import MaskingConfig, apply_plan, make_plan, utterance_keys


def interpolate_hidden(feats: torch.Tensor, hidden: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Fill hidden frames by linear interpolation between the nearest visible frames in time.

    feats (B, T, D); hidden, valid (B, T) bool. A hidden frame with a visible frame on one side only copies
    that frame; an utterance with no visible frame gets zeros. Visible and padded frames are returned as is.
    """
    B, T, D = feats.shape
    t = torch.arange(T, device=feats.device).expand(B, T)  # (B, T)
    seen = valid & ~hidden  # (B, T)
    prev = torch.where(seen, t, torch.full_like(t, -1)).cummax(dim=1).values  # (B, T) last seen index <= t
    nxt = torch.where(seen, t, torch.full_like(t, T)).flip(1).cummin(dim=1).values.flip(1)  # (B, T) first >= t
    has_prev, has_next = prev >= 0, nxt < T
    lo = torch.where(has_prev, prev, nxt).clamp(0, T - 1)  # (B, T)
    hi = torch.where(has_next, nxt, prev).clamp(0, T - 1)  # (B, T)
    span = (hi - lo).clamp_min(1).to(feats.dtype)
    w = ((t - lo).to(feats.dtype) / span).clamp(0, 1)[..., None]  # (B, T, 1); 0 when lo == hi
    gather = lambda idx: feats.gather(1, idx[..., None].expand(B, T, D))  # noqa: E731  (B, T, D)
    filled = (1 - w) * gather(lo) + w * gather(hi)  # (B, T, D)
    filled = torch.where((has_prev | has_next)[..., None], filled, torch.zeros_like(filled))
    return torch.where((hidden & valid)[..., None], filled, feats)


@torch.no_grad()
def reconstruction_report(model, paths: Sequence[str], ids: Sequence[str], masking: MaskingConfig,
                          seed: int = 0, batch_size: int = 8, max_seconds: float | None = None) -> dict:
    """Mean L1 on hidden elements of held-out utterances: the model vs ``zero`` vs ``interpolation``.

    ``model`` is a :class:`~audiorep.pretrain.model.MaskedAcousticModel` (encoder + head). The alteration
    is ``masking`` with every span zeroed, keyed by utterance id and ``seed``, so two models scored with the
    same arguments see identical inputs. Frequency/noise alteration is switched off: the question here is
    whether hidden *frames* are rebuilt from context.
    """
    mcfg = dataclasses.replace(masking, zero_prob=1.0, random_prob=0.0, freq_proportion=0.0, noise_proportion=0.0)
    was_training = model.training
    model.eval()
    sr = model.encoder.feature_config.sample_rate
    sums: dict[str, float] = {}
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
        pred = model.head(model.encoder.encode(apply_plan(feats, plan), flens).last_hidden_state)  # (B, T, D')
        refs = {"model": pred, "zero": torch.zeros_like(targets)}
        if targets.shape == feats.shape:
            refs["interpolation"] = interpolate_hidden(targets, plan.time_mask, plan.valid)
        for k, v in refs.items():
            sums[k] = sums.get(k, 0.0) + float(masked_reconstruction_loss(v, targets, mask, model.loss)) * n
        count += n
    model.train(was_training)
    if count == 0:
        raise ValueError("reconstruction_report: no utterance was long enough to hide a span")
    out: dict = {k: v / count for k, v in sums.items()}  # no interpolation row for another target front end
    out["utterances"] = len(paths)
    out["hidden_elements"] = int(count)
    return out
