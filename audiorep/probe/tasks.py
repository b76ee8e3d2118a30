"""Downstream tasks: what a label is, how it is checked before training, the loss and the metrics.

- ``phone``: frame-level classification at the encoder's 10 ms frames (41 classes on the bundled corpus).
  Labels are aligned to the upstream's frames by length: counts may differ by at most ``label_tolerance``
  frames (default 2: the STFT's centring and a synthesizer's last segment end disagree by one or two
  frames at an utterance's end); extra labels are dropped, missing ones are ignored in loss and accuracy
  (never invented). A larger difference is an error naming the utterance: it means the upstream's frame
  rate is not the labels'.
- ``speaker``: speaker ID over the speakers of the training split; utterance level (mean pool -> linear)
  or frame level (every frame classified; frame accuracy and utterance-vote accuracy).
- ``sentiment``: utterance-level regression on [-3, 3], L1 loss, MMSA's metrics (Acc-2 / F1 / Acc-7 / MAE /
  Corr) from :mod:`audiorep.multimodal.metrics`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.labels import IGNORE_INDEX, num_frames, read_frame_labels
from ..data.manifest import Utterance
from ..errors import ConfigError
from ..audio import valid_mask
from .heads import HEADS
from ..multimodal.metrics import regression_metrics

TASKS = ("phone", "speaker", "sentiment")
SENTIMENT_RANGE = (-3.0, 3.0)
LABEL_HOP = 160  # samples per frame label (10 ms at 16 kHz), the convention of converted_aligned_phones.txt


def align_frame_labels(labels: torch.Tensor, n_frames: int, utt_id: str, tolerance: int) -> torch.Tensor:
    """Frame labels (T_l,) -> exactly ``n_frames`` labels: trim extras, pad missing with IGNORE_INDEX.

    ConfigError naming the utterance when the counts differ by more than ``tolerance`` frames.
    """
    diff = labels.numel() - n_frames
    if abs(diff) > tolerance:
        raise ConfigError(
            f"utterance {utt_id!r}: {labels.numel()} frame labels but the upstream gives {n_frames} frames "
            f"(off by {diff:+d}, tolerance {tolerance}); the upstream's frame rate does not match the 10 ms "
            "labels, or the labels belong to other audio"
        )
    if diff >= 0:
        return labels[:n_frames]
    return torch.cat([labels, torch.full((-diff,), IGNORE_INDEX, dtype=labels.dtype)])


class Meter:
    """Accumulates predictions of one evaluation pass; :meth:`compute` returns the metrics."""

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError


class _FrameAccuracy(Meter):
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, outputs, targets, lengths) -> None:
        pred = outputs.argmax(-1)  # (B, T)
        ok = targets != IGNORE_INDEX  # (B, T)
        self.correct += int(((pred == targets) & ok).sum())
        self.total += int(ok.sum())

    def compute(self) -> dict[str, float]:
        return {"frame_acc": self.correct / max(self.total, 1), "frames": float(self.total)}


class _UtteranceAccuracy(Meter):
    def __init__(self) -> None:
        self.correct = 0
        self.total = 0

    def update(self, outputs, targets, lengths) -> None:
        self.correct += int((outputs.argmax(-1) == targets).sum())
        self.total += int(targets.numel())

    def compute(self) -> dict[str, float]:
        return {"acc": self.correct / max(self.total, 1), "utterances": float(self.total)}


class _FrameVoteAccuracy(Meter):
    """Speaker ID from per-frame predictions: frame accuracy, and a majority vote per utterance."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.frame_correct = self.frames = self.vote_correct = self.utts = 0

    def update(self, outputs, targets, lengths) -> None:
        pred = outputs.argmax(-1)  # (B, T)
        keep = valid_mask(lengths.to(pred.device), pred.shape[1])  # (B, T)
        self.frame_correct += int(((pred == targets[:, None]) & keep).sum())
        self.frames += int(keep.sum())
        for b in range(pred.shape[0]):
            votes = torch.bincount(pred[b][keep[b]], minlength=self.num_classes)  # (C,)
            self.vote_correct += int(int(votes.argmax()) == int(targets[b]))
            self.utts += 1

    def compute(self) -> dict[str, float]:
        return {"frame_acc": self.frame_correct / max(self.frames, 1), "vote_acc": self.vote_correct / max(self.utts, 1),
                "utterances": float(self.utts)}


class _Regression(Meter):
    def __init__(self, family: str) -> None:
        self.family = family
        self.preds: list[np.ndarray] = []
        self.labels: list[np.ndarray] = []

    def update(self, outputs, targets, lengths) -> None:
        self.preds.append(outputs.detach().float().reshape(-1).cpu().numpy())
        self.labels.append(targets.detach().float().reshape(-1).cpu().numpy())

    def compute(self) -> dict[str, float]:
        return regression_metrics(np.concatenate(self.preds), np.concatenate(self.labels), self.family)


@dataclass
class Task:
    """Base: a task checks splits, makes targets, computes the loss and builds meters."""

    head: str  # head name (see heads.HEADS); each task accepts a few
    label_tolerance: int = 2  # frames by which frame labels and upstream frames may differ (frame tasks)
    name: str = ""
    heads: tuple[str, ...] = ()
    primary: str = ""  # the dev metric that selects the best checkpoint
    num_outputs: int = 0
    frame_level: bool = False  # targets / outputs per frame (needs 10 ms upstream frames)
    class_names: list[str] = field(default_factory=list)

    def check_head(self) -> None:
        if self.head not in self.heads:
            raise ConfigError(f"task {self.name!r}: head {self.head!r} not available; choose from {', '.join(self.heads)}")

    def setup(self, corpus: Any, splits: Mapping[str, Sequence[Utterance]], train_split: str) -> None:
        """Check every split's labels before training (ConfigError on the first problem)."""
        for name, utts in splits.items():
            if not utts:
                raise ConfigError(f"task {self.name!r}: split {name!r} of corpus {corpus.name!r} is empty")

    def target(self, utt: Utterance, n_frames: int) -> torch.Tensor:
        raise NotImplementedError

    def match_frame_hop(self, frame_hop: int, sample_rate: int) -> None:
        """Adapt frame targets to an upstream with ``frame_hop`` samples per frame (no-op unless overridden)."""

    def collate_targets(self, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(targets))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def meter(self) -> Meter:
        raise NotImplementedError


@dataclass
class PhoneTask(Task):
    name: str = "phone"
    heads: tuple[str, ...] = ("linear", "mlp")
    primary: str = "frame_acc"
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


@dataclass
class SpeakerTask(Task):
    name: str = "speaker"
    heads: tuple[str, ...] = ("mean-linear", "mean-mlp", "frame-linear")
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


@dataclass
class SentimentTask(Task):
    name: str = "sentiment"
    heads: tuple[str, ...] = ("mean-linear", "mean-mlp")
    primary: str = "MAE"
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


DEFAULT_HEADS = {"phone": "linear", "speaker": "mean-linear", "sentiment": "mean-linear"}


def build_task(name: str, head: str | None = None, label_tolerance: int = 2) -> Task:
    """A task by name with a head (None = the task's default probe)."""
    classes = {"phone": PhoneTask, "speaker": SpeakerTask, "sentiment": SentimentTask}
    if name not in classes:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    if label_tolerance < 0:
        raise ConfigError(f"label_tolerance must be >= 0, got {label_tolerance}")
    task = classes[name](head=head or DEFAULT_HEADS[name], label_tolerance=label_tolerance)
    task.check_head()
    return task
