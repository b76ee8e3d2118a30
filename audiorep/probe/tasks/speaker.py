"""``speaker``: speaker ID over the speakers of the training split; utterance level (mean pool -> linear) or
frame level (every frame classified; frame accuracy and utterance-vote accuracy)."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...audio import valid_mask
from ...data.labels import IGNORE_INDEX
from ...errors import ConfigError
from ..heads import HEADS
from .base import Task, _FrameVoteAccuracy, _UtteranceAccuracy, register_task


@register_task
@dataclass
class SpeakerTask(Task):
    name: str = "speaker"
    heads: tuple[str, ...] = ("mean-linear", "mean-mlp", "frame-linear")
    default_head: str = "mean-linear"
    # the probe table's floor is CMVN log-mel, whose time mean is zero: pool-then-linear is at chance on it by
    # construction, so the table uses a frame ReLU projection before the pool (heads.MeanPoolMLP)
    table_head: str = "mean-mlp"
    speaker_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.frame_level = HEADS.get(self.head, (None, "utterance"))[1] == "frame"
        self.primary = "vote_acc" if self.frame_level else "acc"

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        self.class_names = sorted({u.speaker for u in splits[train_split]})
        self.speaker_index = {s: i for i, s in enumerate(self.class_names)}
        self.num_outputs = len(self.class_names)
        if self.num_outputs < 2:
            raise ConfigError(f"task 'speaker': split {train_split!r} has {self.num_outputs} speaker(s); need >= 2")
        for split, utts in splits.items():
            unknown = sorted({u.speaker for u in utts} - set(self.speaker_index))
            if unknown:
                _blame_the_subset(corpus, splits, split, train_split, unknown)
                raise ConfigError(
                    f"task 'speaker': split {split!r} has speakers not in {train_split!r} ({', '.join(unknown[:5])}"
                    f"{', ...' if len(unknown) > 5 else ''}); speaker ID needs splits that share speakers "
                    "(the bundled corpus's train/dev/test, not spk_train/spk_dev/spk_test)"
                )

    def target(self, utt, n_frames):
        return torch.tensor(self.speaker_index[utt.speaker], dtype=torch.long)

    def loss(self, outputs, targets, lengths):
        if not self.frame_level:
            return F.cross_entropy(outputs.float(), targets)
        B, T, C = outputs.shape
        frame_t = targets[:, None].expand(B, T).clone()  # (B, T)
        frame_t[~valid_mask(lengths.to(outputs.device), T)] = IGNORE_INDEX
        return F.cross_entropy(outputs.reshape(-1, C).float(), frame_t.reshape(-1), ignore_index=IGNORE_INDEX)

    def meter(self):
        return _FrameVoteAccuracy(self.num_outputs) if self.frame_level else _UtteranceAccuracy()


def _blame_the_subset(corpus, splits, split: str, train_split: str, unknown: list[str]) -> None:
    """ConfigError saying so when the splits were cut (``--max-utts``) and it is the cut that lost the speakers:
    the corpus is fine, the subset the user asked for is too small to hold every speaker in training."""
    full = {}
    for name in splits:
        try:
            full[name] = corpus.manifest(name)
        except Exception:  # noqa: BLE001 - not a corpus that can say; the corpus-level message applies
            return
    cut = {name: (len(utts), len(full[name])) for name, utts in splits.items() if len(utts) < len(full[name])}
    if not cut or set(unknown) - {u.speaker for u in full[train_split]}:
        return
    sizes = ", ".join(f"{name} {n} of {total}" for name, (n, total) in cut.items())
    raise ConfigError(
        f"task 'speaker': the utterance subsets asked for (--max-utts / --max-train-utts: {sizes}) leave split "
        f"{split!r} with speakers that the {train_split!r} subset lacks ({', '.join(unknown[:5])}"
        f"{', ...' if len(unknown) > 5 else ''}); the full splits share their speakers: ask for more utterances "
        f"(the training split has {len({u.speaker for u in full[train_split]})} speakers) or for all"
    )
