"""``sid``: SUPERB speaker identification. Projector, mean pooling over valid frames, linear; cross-entropy,
accuracy. Training examples are crops of at most ``max_timestep`` samples at a random (seeded) start.

The classes are the speakers of the training split (sorted). The crop is taken from the cached frames of the
whole utterance (the upstream saw all of it), not from the waveform before the upstream as s3prl does.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...errors import ConfigError
from .base import Task, _UtteranceAccuracy, register_task

MAX_TIMESTEP = 128_000  # samples (8 s at 16 kHz): SUPERB SID's longest training crop (voxceleb1/config.yaml)


@register_task
@dataclass
class SpeakerIdentificationTask(Task):
    name: str = "sid"
    heads: tuple[str, ...] = ("superb-mean",)
    default_head: str = "superb-mean"
    primary: str = "acc"
    max_timestep: int = MAX_TIMESTEP  # longest training crop in samples; the rest of a longer utterance is unused
    speaker_index: dict[str, int] = field(default_factory=dict)

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        if self.max_timestep < 1:
            raise ConfigError(f"task 'sid': max_timestep must be >= 1 samples, got {self.max_timestep}")
        for split, utts in splits.items():
            for u in utts:
                if not isinstance(u.speaker, str) or not u.speaker:
                    raise ConfigError(f"task 'sid': utterance {u.id!r} (split {split!r}) has no speaker")
        self.class_names = sorted({u.speaker for u in splits[train_split]})
        self.speaker_index = {s: i for i, s in enumerate(self.class_names)}
        self.num_outputs = len(self.class_names)
        if self.num_outputs < 2:
            raise ConfigError(f"task 'sid': split {train_split!r} has {self.num_outputs} speaker(s); need >= 2")
        for split, utts in splits.items():
            unknown = sorted({u.speaker for u in utts} - set(self.speaker_index))
            if unknown:
                raise ConfigError(f"task 'sid': split {split!r} has speaker {unknown[0]!r} that split {train_split!r} "
                                  f"lacks ({len(unknown)} such); identification needs the same speakers in every split")

    def train_window(self, n_frames: int, frame_hop: int, rng: random.Random) -> tuple[int, int]:
        keep = max(1, self.max_timestep // frame_hop)
        if n_frames <= keep:
            return 0, n_frames
        return rng.randint(0, n_frames - keep), keep

    def target(self, utt, n_frames):
        return torch.tensor(self.speaker_index[utt.speaker], dtype=torch.long)

    def loss(self, outputs, targets, lengths):
        return F.cross_entropy(outputs.float(), targets)

    def meter(self):
        return _UtteranceAccuracy()
