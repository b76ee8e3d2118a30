"""A generic step-based trainer: DDP, gradient accumulation, bf16 autocast, clipping, logs, atomic resume.

The task-specific part is a :class:`TrainTask`: it turns a collated batch into model inputs plus two
counts, and the model's forward returns the *sum* of the loss over the batch. The trainer divides by the
count summed over every micro-batch of the step and every rank, so the loss is the mean over the whole
global batch however it is split across processes and accumulation steps: a 2-process run computes the
same loss and gradient as a 1-process run over the same utterances.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Protocol

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from .checkpoint import CheckpointManager, capture_rng, restore_rng
from .distributed import DistContext, all_gather_objects, all_reduce_sum, barrier
from .loader import ResumableBatches
from .metrics import MetricsLogger
from .optim import OptimConfig, build_optimizer, build_scheduler

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How long and how a run trains (model- and data-independent)."""

    max_steps: int = 1_000_000  # optimiser steps; the lr schedule spans exactly these
    grad_accum: int = 1  # micro-batches per optimiser step (global batch = batch_size x accum x world)
    log_every: int = 10  # steps between CSV/TensorBoard rows
    ckpt_every: int = 1000  # steps between checkpoints (a final one is always written)
    keep_last: int = 3  # checkpoints kept on disk; older ones are deleted
    seed: int = 1337  # seeds init, dropout, shuffling and the alteration keys
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    compile: bool = False  # torch.compile the model (worth it for long GPU runs; slow to start on CPU)
    device: str = "auto"  # "auto", "cpu", "cuda" (= this rank's GPU) or "cuda:N"
    progress: bool = True  # tqdm bar on rank 0 (loss, lr, frames/s)

    def __post_init__(self) -> None:
        if self.max_steps < 1 or self.grad_accum < 1 or self.log_every < 1 or self.ckpt_every < 1:
            raise ConfigError("train.max_steps, grad_accum, log_every and ckpt_every must be >= 1")
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")


class TrainTask(Protocol):
    """What the trainer needs from a task."""

    def prepare(self, batch: dict[str, Any], step: int, device: torch.device
                ) -> tuple[dict[str, Any], torch.Tensor, torch.Tensor]:
        """Batch -> (forward kwargs on ``device``, loss normaliser count, frames processed) (scalars)."""
        ...


@dataclass
class StepLog:
    step: int
    loss: float
    lr: float
    grad_norm: float
    frames_per_s: float
    elapsed_s: float


def autocast_context(device: torch.device, precision: str):
    """bf16 autocast on CUDA (no loss scaler needed); fp32 elsewhere unless bf16 is asked for explicitly."""
    use_bf16 = precision == "bf16" or (precision == "auto" and device.type == "cuda")
    if not use_bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class Trainer:
    """Runs ``model`` (its forward returns a scalar loss *sum*) on batches from ``batches`` via ``task``."""

    def __init__(self, model: nn.Module, task: TrainTask, batches: ResumableBatches, train: TrainConfig,
                 optim: OptimConfig, out_dir: str | os.PathLike, ctx: DistContext,
                 config_dict: dict[str, Any] | None = None):
        self.model = model.to(ctx.device)  # the unwrapped module (saved in checkpoints)
        self.task, self.batches, self.train, self.optim_cfg, self.ctx = task, batches, train, optim, ctx
        self.out_dir = Path(out_dir)
        self.config_dict = config_dict or {}
        self.optimizer = build_optimizer(self.model, optim)
        self.scheduler = build_scheduler(self.optimizer, train.max_steps, optim)
        self.ckpts = CheckpointManager(self.out_dir / "checkpoints", train.keep_last)
        self.step = 0
        runner: nn.Module = self.model
        if train.compile:
            runner = torch.compile(runner)  # type: ignore[assignment]
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            runner = DDP(runner, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        self.runner = runner
        self.history: list[StepLog] = []

    # ---- checkpoints ----
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.batches.state_dict(),
            "config": self.config_dict,
            "world_size": self.ctx.world_size,
        }

    def save_checkpoint(self) -> Path | None:
        """Every rank's RNG state is gathered; rank 0 writes the file."""
        rngs = all_gather_objects(capture_rng(), self.ctx)
        path = None
        if self.ctx.is_main:
            state = self.state_dict()
            state["rng"] = rngs
            path = self.ckpts.save(state, self.step)
        barrier(self.ctx)
        return path

    def load_checkpoint(self, path: str | os.PathLike, state: dict[str, Any] | None = None) -> None:
        """Restore the run from ``path`` (or from its already read ``state``)."""
        if state is None:
            state = CheckpointManager.load(path, map_location="cpu")
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"{path}: the checkpoint does not fit this model config: {exc}") from exc
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.batches.load_state_dict(state["loader"])
        self.step = int(state["step"])
        rngs = state.get("rng") or []
        if len(rngs) == self.ctx.world_size:
            restore_rng(rngs[self.ctx.rank])
        else:
            log.warning("%s: saved with %d process(es), resuming with %d: dropout RNG streams are re-seeded",
                        path, len(rngs), self.ctx.world_size)
            torch.manual_seed(self.train.seed + 7919 * self.step + self.ctx.rank)

    def resume(self, path: str | os.PathLike | None = None) -> bool:
        """Load ``path`` or the newest readable checkpoint in the run folder; False when there is none."""
        if path is not None:
            self.load_checkpoint(path)
            return True
        found = self.ckpts.load_latest()
        if found is None:
            return False
        self.load_checkpoint(*found)
        return True

    # ---- training ----
    def _micro_batches(self, it: Iterator[dict[str, Any]]) -> list[dict[str, Any]]:
        return [next(it) for _ in range(self.train.grad_accum)]

    def fit(self, step_budget: int | None = None,
            on_log: Callable[[StepLog], None] | None = None) -> list[StepLog]:
        """Train until ``train.max_steps`` (or for at most ``step_budget`` more steps, e.g. a job's time slot).

        Returns the step logs of this call (every step, also those between CSV rows).
        """
        ctx, cfg = self.ctx, self.train
        metrics = None
        if ctx.is_main:
            metrics = MetricsLogger(self.out_dir, ["step", "loss", "lr", "grad_norm", "frames_per_s", "elapsed_s"],
                                    resume_step=self.step)
        end = cfg.max_steps if step_budget is None else min(cfg.max_steps, self.step + step_budget)
        bar = None
        if ctx.is_main and cfg.progress and end > self.step:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.max_steps, initial=self.step, desc="pretrain", unit="step", dynamic_ncols=True)
        params = [p for p in self.model.parameters() if p.requires_grad]
        it = iter(self.batches)
        t_start = time.perf_counter()
        logs: list[StepLog] = []
        window: list[StepLog] = []  # steps since the last CSV row
        self.model.train()
        try:
            while self.step < end:
                t0 = time.perf_counter()
                micro = self._micro_batches(it)
                prepared = [self.task.prepare(b, self.step, ctx.device) for b in micro]
                counts = torch.stack([torch.as_tensor(c, dtype=torch.float64, device=ctx.device).reshape(())
                                      for _, c, _ in prepared])
                frames = torch.stack([torch.as_tensor(f, dtype=torch.float64, device=ctx.device).reshape(())
                                      for _, _, f in prepared])
                totals = all_reduce_sum(torch.stack([counts.sum(), frames.sum()]), ctx)
                denom = totals[0].clamp_min(1.0).float()
                loss_sum = torch.zeros((), device=ctx.device)
                for i, (kwargs, _, _) in enumerate(prepared):
                    last = i == len(prepared) - 1
                    sync = contextlib.nullcontext() if (last or not ctx.distributed) else self.runner.no_sync()
                    with sync:
                        with autocast_context(ctx.device, cfg.precision):
                            out = self.runner(**kwargs)  # scalar loss sum over this micro-batch
                        # DDP averages gradients over ranks; * world_size turns that into the global sum / denom
                        (out.float() * (ctx.world_size / denom)).backward()
                    loss_sum = loss_sum + out.detach().float()
                if self.optim_cfg.grad_clip > 0:
                    gnorm = torch.nn.utils.clip_grad_norm_(params, self.optim_cfg.grad_clip)
                else:
                    gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in params if p.grad is not None]))
                lr = self.optimizer.param_groups[0]["lr"]
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step += 1
                loss = float(all_reduce_sum(loss_sum, ctx) / denom)
                if not math.isfinite(loss):
                    raise FloatingPointError(f"step {self.step}: loss is {loss}; lower optim.lr or check the data")
                dt = time.perf_counter() - t0
                entry = StepLog(self.step, loss, lr, float(gnorm), float(totals[1]) / max(dt, 1e-9),
                                time.perf_counter() - t_start)
                logs.append(entry)
                if on_log is not None:
                    on_log(entry)
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", fps=f"{entry.frames_per_s:,.0f}")
                window.append(entry)
                if metrics is not None and (self.step % cfg.log_every == 0 or self.step == end or self.step == 1):
                    # one row per interval: the mean loss / grad norm / throughput of the steps since the last row,
                    # so the curve shows the trend rather than one batch's luck
                    n = len(window)
                    metrics.log({"step": self.step, "loss": sum(e.loss for e in window) / n, "lr": lr,
                                 "grad_norm": sum(e.grad_norm for e in window) / n,
                                 "frames_per_s": sum(e.frames_per_s for e in window) / n,
                                 "elapsed_s": entry.elapsed_s})
                    window = []
                if self.step % cfg.ckpt_every == 0 or self.step == end:
                    self.save_checkpoint()
        finally:
            if bar is not None:
                bar.close()
            if metrics is not None:
                metrics.close()
        self.history.extend(logs)
        return logs
