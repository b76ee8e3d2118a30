"""``phone``: frame-level classification at the encoder's 10 ms frames (41 classes on the bundled corpus).

Labels are aligned to the upstream's frames by length: counts may differ by at most ``label_tolerance``
frames (default 2: the STFT's centring and a synthesizer's last segment end disagree by one or two frames at
an utterance's end); extra labels are dropped, missing ones are ignored in loss and accuracy (never
invented). A larger difference is an error naming the utterance: it means the upstream's frame rate is not
the labels'.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ...data.labels import IGNORE_INDEX, num_frames, read_frame_labels
from ...errors import ConfigError
from .base import Task, _FrameAccuracy, align_frame_labels, register_task


@register_task
@dataclass
class PhoneTask(Task):
    name: str = "phone"
    heads: tuple[str, ...] = ("frame-linear", "frame-mlp")
    primary: str = "frame_acc"
    default_head: str = "frame-linear"
    frame_level: bool = True
    labels: dict[str, torch.Tensor] = field(default_factory=dict)
    label_stride: int = 1  # 10 ms labels per upstream frame (2 for wav2vec2's 20 ms frames)

    def match_frame_hop(self, frame_hop: int, sample_rate: int) -> None:
        """An upstream with coarser frames (a multiple of 10 ms) gets one label per frame; anything else is refused."""
        stride, rest = divmod(frame_hop * 100, sample_rate)
        if rest or stride < 1:
            raise ConfigError(f"task 'phone' has 10 ms frame labels but the upstream's frame shift is "
                              f"{frame_hop * 1000 / sample_rate:g} ms, not a multiple of 10 ms")
        self.label_stride = stride

    def setup(self, corpus, splits, train_split) -> None:
        super().setup(corpus, splits, train_split)
        if corpus.frame_labels is None or corpus.label_names is None:
            raise ConfigError(f"task 'phone' needs frame labels, but corpus {corpus.name!r} has no "
                              "converted_aligned_phones.txt + phones.txt; pick a corpus with phone alignments")
        self.class_names = corpus.phone_names()
        self.num_outputs = len(self.class_names)
        # read with the class count: a label outside the class set fails here, naming file and line
        self.labels = read_frame_labels(corpus.frame_labels, num_classes=self.num_outputs)
        for split, utts in splits.items():
            for u in utts:
                lab = self.labels.get(u.id)
                if lab is None:
                    raise ConfigError(f"task 'phone': utterance {u.id!r} (split {split!r}) has no frame labels "
                                      f"in {corpus.frame_labels}")
                T = num_frames(u.num_samples, u.sample_rate // 100)  # 10 ms frames at the file's rate
                if abs(lab.numel() - T) > self.label_tolerance:
                    raise ConfigError(
                        f"task 'phone': utterance {u.id!r} has {lab.numel()} frame labels but its audio "
                        f"({u.num_samples} samples) makes {T} frames of 10 ms (tolerance {self.label_tolerance})"
                    )

    def target(self, utt, n_frames):
        labels = self.labels[utt.id]  # (T_10ms,)
        k = self.label_stride
        if k > 1:  # the 10 ms label nearest each coarse frame's centre (wav2vec2: frame t covers labels 2t..2t+2)
            labels = labels[k // 2 :: k]
        return align_frame_labels(labels, n_frames, utt.id, self.label_tolerance)  # (T,)

    def collate_targets(self, targets):
        return torch.nn.utils.rnn.pad_sequence(list(targets), batch_first=True, padding_value=IGNORE_INDEX)  # (B, T)

    def loss(self, outputs, targets, lengths):
        T = outputs.shape[1]
        targets = targets[:, :T]
        return F.cross_entropy(outputs.reshape(-1, outputs.shape[-1]).float(), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX)

    def meter(self):
        return _FrameAccuracy()
