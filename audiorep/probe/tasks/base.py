"""What every downstream task is: a label check, targets, a loss, meters; and the registry tasks fill.

A task is one file in this folder holding a :class:`Task` subclass decorated with :func:`register_task`;
the probe runner, the CLI's choices and the probe table read :data:`TASKS`, so adding a task is adding
that file.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence, TypeVar

import numpy as np
import torch

from ...data.labels import IGNORE_INDEX
from ...audio import valid_mask
from ...data.manifest import Utterance
from ...errors import ConfigError
from ...scoring import regression_metrics



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
    default_head: str = ""  # the head a run gets when it names none (the task's standard probe)
    table_head: str = ""  # the head of the task's probe-table column; "" = default_head
    select_mode: str = "auto"  # how ``primary`` improves: "max", "min" (error rates), "auto" (by the Trainer's rule)

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

    def train_window(self, n_frames: int, frame_hop: int, rng: random.Random) -> tuple[int, int]:
        """(start, length) of the frames one training example uses; default all of them (SID overrides: crops)."""
        return 0, n_frames

    def collate_targets(self, targets: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(list(targets))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def meter(self) -> Meter:
        raise NotImplementedError


TASKS: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type)


def register_task(cls: T) -> T:
    """Class decorator: add a :class:`Task` subclass to :data:`TASKS` under its ``name`` default."""
    name = cls.name
    if not name or name in TASKS:
        raise ConfigError(f"task class {cls.__qualname__}: needs a unique name, got {name!r}")
    TASKS[name] = cls
    return cls


def build_task(name: str, head: str | None = None, label_tolerance: int = 2) -> Task:
    """A registered task by name with a head (None = the task's default probe)."""
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; choose from {', '.join(sorted(TASKS))}")
    if label_tolerance < 0:
        raise ConfigError(f"label_tolerance must be >= 0, got {label_tolerance}")
    cls = TASKS[name]
    task = cls(head=head or cls.default_head, label_tolerance=label_tolerance)
    task.check_head()
    return task
