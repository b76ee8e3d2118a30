"""Data for the fusion heads: MMSA pickles, or a corpus whose speech goes through a (frozen) audiorep upstream.

Either way a split becomes a :class:`FusionSplit`: transcripts, labels, per-utterance audio feature tensors
(T, D) and optionally vision (T, D) and pre-extracted text features. Upstream features are computed once per
(upstream weights, mode, layer, pooling, split) and cached on disk (``audiorep.probe.cache``), so every seed
and head reuses them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class FusionSplit:
    """One split in the form every head's trainer reads."""

    raw_text: list[str]
    labels: torch.Tensor  # (N,) float sentiment
    audio: list[torch.Tensor]  # N x (T, D) (for a weighted-sum cache: N x (K, T, D), K hidden states)
    vision: list[torch.Tensor] | None = None  # N x (T, Dv), or None (no vision)
    text_features: list[torch.Tensor] | None = None  # N x (L, Dt) pre-extracted text features, or None

    def __len__(self) -> int:
        return len(self.labels)

    def with_audio_swapped(self, seed: int = 0) -> "FusionSplit":
        """The same texts, labels and vision, each item with another item's audio (see ``swapped_audio``)."""
        from ..scoring import swapped_audio

        return dataclasses.replace(self, audio=swapped_audio(self.audio, seed))

    def batch(self, idx: Sequence[int]) -> dict[str, torch.Tensor | list | None]:
        """Pad the items ``idx``: audio (B, T, D) [or (K, B, T, D)] + lengths, vision likewise, labels (B,)."""
        aud = [self.audio[i] for i in idx]
        stacked = aud[0].dim() == 3
        if stacked:  # (K, T, D) items -> (K, B, T, D)
            a_lens = torch.tensor([a.shape[1] for a in aud], dtype=torch.long)
            T = int(a_lens.max())
            audio = torch.stack([F.pad(a, (0, 0, 0, T - a.shape[1])) for a in aud], 1).float()
        else:
            a_lens = torch.tensor([a.shape[0] for a in aud], dtype=torch.long)
            audio = torch.nn.utils.rnn.pad_sequence(aud, batch_first=True).float()  # (B, T, D)
        out = {"audio": audio, "audio_lens": a_lens, "labels": self.labels[list(idx)],
               "raw_text": [self.raw_text[i] for i in idx], "vision": None, "vision_lens": None,
               "text_features": None, "index": torch.as_tensor(list(idx), dtype=torch.long)}
        if self.vision is not None:
            vis = [self.vision[i] for i in idx]
            out["vision"] = torch.nn.utils.rnn.pad_sequence(vis, batch_first=True).float()  # (B, Tv, Dv)
            out["vision_lens"] = torch.tensor([v.shape[0] for v in vis], dtype=torch.long)
        if self.text_features is not None:
            out["text_features"] = [self.text_features[i] for i in idx]
        return out


def load_mmsa_splits(path: str | os.PathLike, use_vision: bool = True) -> dict[str, FusionSplit]:
    """An MMSA pickle -> ``{"train", "dev", "test"}`` FusionSplits (lengths measured, as :mod:`audiorep.data.mmsa`)."""
    from ..data.mmsa import read_mmsa_pickle

    out = {}
    for name, s in read_mmsa_pickle(path).items():
        n = len(s)
        out[name] = FusionSplit(
            raw_text=list(s.raw_text),
            labels=torch.from_numpy(s.labels.copy()).float(),
            audio=[torch.from_numpy(s.audio[i, : s.audio_lengths[i]].copy()) for i in range(n)],
            vision=[torch.from_numpy(s.vision[i, : s.vision_lengths[i]].copy()) for i in range(n)] if use_vision
            else None,
            text_features=[torch.from_numpy(s.text[i, : s.text_lengths[i]].copy()) for i in range(n)],
        )
    return out


def pool_time(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Average non-overlapping groups of ``stride`` frames along the second-to-last axis (a ragged tail group
    is averaged over what it has). Cuts sequence cost for LSTMs/attention; 10 ms frames x 4 = 40 ms."""
    if stride <= 1:
        return x
    T = x.shape[-2]
    n = -(-T // stride)
    pad = n * stride - T
    xp = F.pad(x, (0, 0, 0, pad))
    summed = xp.reshape(*x.shape[:-2], n, stride, x.shape[-1]).sum(-2)  # (..., n, D)
    counts = torch.full((n, 1), float(stride), dtype=x.dtype, device=x.device)
    counts[-1] = stride - pad
    return summed / counts


def corpus_splits(data: str, splits: Sequence[str], upstream: str = "logmel", mode: str = "last",
                  layer: int | None = None, audio_pool: int = 4, label_key: str = "sentiment",
                  cache: str | os.PathLike | None = None, device: str = "cpu",
                  max_utts: int | None = None) -> tuple[dict[str, FusionSplit], "object"]:
    """A corpus (``get_corpus`` name/folder) through a frozen upstream -> FusionSplits, plus the Featurizer.

    ``mode`` is a frozen Featurizer mode: ``last`` / ``layer`` cache one (T, H) tensor per utterance;
    ``weighted-sum`` caches every hidden state (K, T, H) and the trainer learns the layer weights.
    """
    from ..audio import read_audio
    from ..data.corpus import get_corpus
    from ..data.manifest import seeded_subset
    from ..probe.cache import cache_file, feature_cache_key, load_features, save_features, utterance_ident
    from ..models.featurizer import Featurizer
    from ..weights.loading import load_upstream

    if mode == "finetune":
        raise ConfigError("fusion heads train on cached features: mode must be weighted-sum, last or layer")
    corpus = get_corpus(data)
    up = load_upstream(upstream, device=device)
    feat = Featurizer(up, mode=mode, layer=layer)
    out = {}
    for split in splits:
        utts = seeded_subset(corpus.manifest(split), max_utts, seed=0)  # the probe's subset at its default seed
        missing = [u.id for u in utts if label_key not in u.labels]
        if missing:
            raise ConfigError(f"corpus {data!r} split {split!r}: utterance {missing[0]!r} has no {label_key!r} label")
        no_text = [u.id for u in utts if not u.text]
        if no_text:
            raise ConfigError(f"corpus {data!r} split {split!r}: utterance {no_text[0]!r} has no transcript")
        key = feature_cache_key(up, mode=mode, layer=feat.layer, audio_pool=audio_pool,
                                utterances=utterance_ident(utts))
        path = cache_file(cache, split, key) if cache else None
        stored = load_features(path, [u.id for u in utts])
        if stored is None:
            stored = {}
            for u in utts:
                wav, _ = read_audio(u.path, sample_rate=getattr(up, "sample_rate", 16000))
                states, lens = feat.upstream_states(wav[None].to(device), torch.tensor([wav.shape[0]]))
                T = int(lens[0])
                x = torch.stack([s[0, :T].float().cpu() for s in states], 0)  # (K, T, H)
                x = pool_time(x, audio_pool).half()
                stored[u.id] = x if x.shape[0] > 1 else x[0]  # (K, T, H) for a weighted sum, else (T, H)
            save_features(path, stored)
        out[split] = FusionSplit(raw_text=[u.text for u in utts],
                                 labels=torch.tensor([float(u.labels[label_key]) for u in utts]),
                                 audio=[stored[u.id] for u in utts])
    return out, feat
