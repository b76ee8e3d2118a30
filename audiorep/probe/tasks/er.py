"""``er``: SUPERB emotion recognition. Projector, mean pooling over valid frames, linear; cross-entropy,
accuracy per fold (the SUPERB runner reports the mean over the leave-one-session-out folds).

The class label is ``labels["emotion"]`` (IEMOCAP: neu, hap, ang, sad, with exc already merged into hap by the
reader) or, on the bundled corpus, its prosodic ``labels["style"]``; the folds come from
:func:`audiorep.data.superb.er_folds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ...data.iemocap import ER_CLASSES
from ...data.superb import SYNTH_STYLE_CLASSES
from ...errors import ConfigError
from .base import Task, _UtteranceAccuracy, register_task

# label key -> its class set, in class-index order; the first key an utterance carries decides
ER_LABELS = {"emotion": tuple(ER_CLASSES), "style": tuple(SYNTH_STYLE_CLASSES)}


def er_label_key(utts) -> str:
    """Which ER label a corpus carries: ``emotion`` (IEMOCAP) or ``style`` (the bundled corpus)."""
    for key in ER_LABELS:
        if utts and all(key in u.labels for u in utts):
            return key
    first = utts[0].id if utts else "(none)"
    raise ConfigError(f"task 'er': the utterances carry no emotion label (labels['emotion'] or labels['style'], "
                      f"e.g. utterance {first!r}); prepare the corpus with its emotion labels")


@register_task
@dataclass
class EmotionRecognitionTask(Task):
    name: str = "er"
    heads: tuple[str, ...] = ("superb-mean",)
    default_head: str = "superb-mean"
    primary: str = "acc"
    label_key: str = ""  # "" = detected from the utterances (see ER_LABELS)

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        everything = [u for utts in splits.values() for u in utts]
        if not self.label_key:
            self.label_key = er_label_key(everything)
        if self.label_key not in ER_LABELS:
            raise ConfigError(f"task 'er': label_key must be one of {', '.join(ER_LABELS)}, got {self.label_key!r}")
        self.class_names = list(ER_LABELS[self.label_key])
        self.num_outputs = len(self.class_names)
        for split, utts in splits.items():
            for u in utts:
                v = u.labels.get(self.label_key)
                if v not in self.class_names:
                    raise ConfigError(f"task 'er': utterance {u.id!r} (split {split!r}) has {self.label_key}={v!r}, "
                                      f"not one of {', '.join(self.class_names)}")

    def target(self, utt, n_frames):
        return torch.tensor(self.class_names.index(utt.labels[self.label_key]), dtype=torch.long)

    def loss(self, outputs, targets, lengths):
        return F.cross_entropy(outputs.float(), targets)

    def meter(self):
        return _UtteranceAccuracy()
