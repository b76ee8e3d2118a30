"""``sentiment``: utterance-level regression on [-3, 3], L1 loss, MMSA's metrics (Acc-2 / F1 / Acc-7 / MAE /
Corr) from :mod:`audiorep.scoring`."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .base import Task, _Regression, register_task

SENTIMENT_RANGE = (-3.0, 3.0)


@register_task
@dataclass
class SentimentTask(Task):
    name: str = "sentiment"
    heads: tuple[str, ...] = ("mean-linear", "mean-mlp")
    primary: str = "MAE"
    default_head: str = "mean-linear"
    # the probe table's floor is CMVN log-mel, whose time mean is zero: pool-then-linear is at chance on it by
    # construction, so the table uses a frame ReLU projection before the pool (heads.MeanPoolMLP)
    table_head: str = "mean-mlp"
    num_outputs: int = 1
    label_key: str = "sentiment"  # manifest label holding the score
    family: str = "mosi"  # metric family: [-3, 3] labels as in CMU-MOSI

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        lo, hi = SENTIMENT_RANGE
        for split, utts in splits.items():
            for u in utts:
                v = u.labels.get(self.label_key)
                if v is None:
                    raise ConfigError(f"task 'sentiment': utterance {u.id!r} (split {split!r}) of corpus "
                                      f"{corpus.name!r} has no {self.label_key!r} label; this corpus has no "
                                      "sentiment annotation")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo <= float(v) <= hi:
                    raise ConfigError(f"task 'sentiment': utterance {u.id!r} has {self.label_key}={v!r}, "
                                      f"outside [{lo}, {hi}]")

    def target(self, utt, n_frames):
        return torch.tensor(float(utt.labels[self.label_key]), dtype=torch.float32)

    def loss(self, outputs, targets, lengths):
        return F.l1_loss(outputs.float().reshape(-1), targets.float())  # MMSA trains with L1

    def meter(self):
        return _Regression(self.family)
