"""The Trainer's plug-in contract: :class:`TrainTask` declares every hook the loop calls, each with its default;
:class:`TrainableState` declares what a model may keep out of checkpoints.

A task subclasses :class:`TrainTask` and overrides what it needs; the Trainer calls every hook unconditionally,
so what a run does is read off the task's class, not discovered while it runs.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError


class TrainTask:
    """A workload for :class:`~audiorep.train.trainer.Trainer`. Only :meth:`prepare` has no default."""

    name: str = "train"  # shown on the progress bar and in logs
    # dev metrics written as ``dev_<name>`` columns of the dev rows (the keys :meth:`evaluate` returns)
    log_metrics: Sequence[str] = ("loss",)
    # dev metrics printed at each evaluation when the run selects on no metric
    show_metrics: Sequence[str] = ("loss",)
    # whether an improved dev evaluation keeps the weights as best.pt (pretraining: the final weights are the
    # model and the held-out rows only diagnostics)
    keeps_best: bool = True
    # a file name here makes the dev rows go to that file and metrics.csv keep the per-interval step rows
    # (pretraining: loss curve and held-out check side by side); None = an evaluating run's metrics.csv holds
    # the dev rows
    dev_log: str | None = None

    def prepare(self, batch: Any, step: int, device: torch.device) -> tuple[Any, Any, Any]:
        """Batch -> (forward inputs on ``device``, loss normaliser count, frames processed) (scalars).

        The trainer divides the summed loss by the count summed over the step's micro-batches and ranks; a
        task whose forward already returns a batch mean gives 1.
        """
        raise NotImplementedError(f"{type(self).__name__}.prepare")

    def forward(self, runner: nn.Module, inputs: Any) -> tuple[torch.Tensor, Any]:
        """(scalar loss of this micro-batch, outputs for :meth:`after_step`). Default: ``runner(**inputs)``
        is the loss and there are no outputs."""
        return runner(**inputs), None

    def after_step(self, outputs: list[Any], batches: list[Any], epoch: int) -> None:
        """Called after every optimiser step with each micro-batch's outputs and batch (``epoch``: finished
        epochs). Default: nothing."""

    def train_batches(self, epoch: int, rank: int, world: int) -> Iterable[Any]:
        """One finite pass over this rank's training batches. Only called when the Trainer got no batch stream;
        default: refuse, naming the task."""
        raise ConfigError(f"task {self.name!r}: give a batch stream or a task with train_batches(epoch)")

    def steps_per_epoch(self) -> int:
        """Batches per pass (epoch runs: sets the lr schedule's length). Default 1: a schedule that is constant
        (or ends after the first epoch) needs no count."""
        return 1

    def parameters(self) -> list[nn.Parameter] | None:
        """What trains and is clipped, in that order; None (default) = the model's parameters that need grad."""
        return None

    def evaluates(self) -> bool:
        """Whether :meth:`evaluate` gives dev metrics; default: when the subclass overrides it."""
        return type(self).evaluate is not TrainTask.evaluate

    def evaluate(self) -> dict[str, float]:
        """Dev metrics {name: value} (the trainer puts the model back in train mode afterwards)."""
        raise NotImplementedError(f"{type(self).__name__}.evaluate")

    def state_dict(self) -> dict[str, Any]:
        """Task state a checkpoint keeps for an exact resume beyond the trainer's own. Default: none."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (``{}`` for checkpoints that have none). Default: nothing."""


class TrainableState:
    """Mixin for an ``nn.Module`` whose checkpoints leave frozen parts out (a frozen upstream, a frozen LM).

    The Trainer saves and restores a model's weights through these two methods when the model is one of these,
    else through ``state_dict`` / ``load_state_dict``; the defaults here are those same full-state calls.
    """

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint keeps."""
        return self.state_dict()  # type: ignore[attr-defined]

    def load_trainable(self, state: dict[str, torch.Tensor], source: str) -> None:
        """Put :meth:`trainable_state_dict`'s output back; CheckpointError naming ``source`` when it does not fit."""
        try:
            self.load_state_dict(state)  # type: ignore[attr-defined]
        except RuntimeError as exc:
            raise CheckpointError(f"{source}: the checkpoint does not fit this model config: {exc}") from exc


def model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights a checkpoint keeps of ``model``."""
    return model.trainable_state_dict() if isinstance(model, TrainableState) else TrainableState.trainable_state_dict(model)


def load_model_state(model: nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Put :func:`model_state`'s output back into ``model``."""
    if isinstance(model, TrainableState):
        model.load_trainable(state, source)
    else:
        TrainableState.load_trainable(model, state, source)  # type: ignore[arg-type]
