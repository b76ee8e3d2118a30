"""The one training loop: step or epoch budgets, dev evaluation, early stopping on a named metric, the best
checkpoint, DDP, gradient accumulation, bf16 autocast, clipping, logs and exact, atomic resume.

The workload is a :class:`~audiorep.train.task.TrainTask`: it turns a batch into forward inputs plus a loss
normaliser count, runs the forward, and (optionally) evaluates on dev; every hook the loop calls is declared
there with its default. The trainer divides the loss by the
count summed over every micro-batch of the step and every rank, so the loss is the mean over the whole
global batch however it is split across processes and accumulation steps: a 2-process run computes the
same loss and gradient as a 1-process run over the same utterances. A task whose forward already returns
a batch mean uses a count of 1 per batch.

Two ways to feed batches: an endless :class:`ResumableBatches` stream (pretraining; resumes mid-epoch), or a
task with ``train_batches(epoch, rank, world)`` (probes, fusion heads, TEASEL; one finite pass per epoch). Such a
task trains for ``epochs`` (resumes at epoch boundaries, where it also evaluates and checkpoints) or, with
``epochs`` unset, for ``max_steps`` steps over as many passes as that takes (TEASEL's LAA pretraining).
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from ..errors import CheckpointError, ConfigError
from ..fileio import atomic_write_bytes
from ..validate import SEED, check_ranges, ints, reals
from .checkpoint import CheckpointManager
from .distributed import DistContext, all_gather_objects, all_reduce_sum, barrier
from .loader import ResumableBatches
from .metrics import MetricsLogger
from .optim import OptimConfig, build_optimizer, build_scheduler
from .rng import capture_rng, restore_rng
from .select import Selection
from .task import TrainTask, load_model_state, model_state

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """How long and how a run trains (model- and data-independent)."""

    max_steps: int = 1_000_000  # optimiser steps; the lr schedule spans exactly these (step budget)
    epochs: int | None = None  # epoch budget (tasks with train_batches); replaces max_steps when set
    grad_accum: int = 1  # micro-batches per optimiser step (global batch = batch_size x accum x world)
    log_every: int = 10  # steps between CSV/TensorBoard rows
    ckpt_every: int = 1000  # steps between checkpoints (a final one is always written; epoch runs: every epoch)
    keep_last: int = 3  # checkpoints kept on disk; older ones are deleted
    seed: int = 1337  # seeds init, dropout, shuffling and the alteration keys
    precision: str = "auto"  # "auto" = bf16 autocast on CUDA, fp32 on CPU; or "fp32" / "bf16"
    compile: bool = False  # torch.compile the model (worth it for long GPU runs; slow to start on CPU)
    device: str = "auto"  # "auto", "cpu", "cuda" (= this rank's GPU) or "cuda:N"
    progress: bool = True  # tqdm bar on rank 0 (loss, lr, frames/s)
    eval_every: int = 0  # steps between dev evaluations; 0 = at the end of every epoch (epoch runs) or never
    select_metric: str | None = None  # dev metric for early stopping and the best checkpoint; None = no selection
    select_mode: str = "auto"  # "max", "min", or "auto" (lower is better for losses, errors and MAE)
    patience: int | None = None  # evaluations without a better select_metric before stopping; None = never stop
    # evaluations without a better select_metric before the lr is multiplied by plateau_factor (None = never):
    # a probe at a fixed lr stalls above its optimum, and a lower rate then finds the rest
    plateau_patience: int | None = None
    plateau_factor: float = 0.5

    def __post_init__(self) -> None:
        check_ranges(self, "train", {
            "max_steps": ints(1, 10**12, "optimiser steps"), "epochs": ints(1, 10**6, "epochs", optional=True),
            "grad_accum": ints(1, 10**6, "micro-batches per step"), "log_every": ints(1, 10**12, "steps"),
            "ckpt_every": ints(1, 10**12, "steps"), "keep_last": ints(1, 10**6, "checkpoints"), "seed": SEED,
            "eval_every": ints(0, 10**12, "steps (0 = per epoch or never)"),
            "patience": ints(1, 10**6, "evaluations", optional=True),
            "plateau_patience": ints(1, 10**6, "evaluations", optional=True),
            "plateau_factor": reals(0.0, 1.0, "(an lr multiplier)", low_open=True),
        })
        if self.precision not in ("auto", "fp32", "bf16"):
            raise ConfigError(f"train.precision must be 'auto', 'fp32' or 'bf16', got {self.precision!r}")
        if self.epochs is not None and self.epochs < 1:
            raise ConfigError(f"train.epochs must be >= 1 or null, got {self.epochs}")
        if self.patience is not None and self.patience < 1:
            raise ConfigError(f"train.patience must be >= 1 or null, got {self.patience}")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every must be >= 0, got {self.eval_every}")
        if self.plateau_patience is not None and self.plateau_patience < 1:
            raise ConfigError(f"train.plateau_patience must be >= 1 or null, got {self.plateau_patience}")
        if not 0.0 < self.plateau_factor <= 1.0:
            raise ConfigError(f"train.plateau_factor must lie in (0, 1], got {self.plateau_factor}")
        if self.select_mode not in ("auto", "max", "min"):
            raise ConfigError(f"train.select_mode must be 'auto', 'max' or 'min', got {self.select_mode!r}")


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
    """Trains ``model`` on ``task``'s batches (``batches`` when given, else ``task.train_batches``).

    The task's hooks are :class:`~audiorep.train.task.TrainTask`'s; a model that leaves frozen parts out of
    checkpoints is a :class:`~audiorep.train.task.TrainableState`. ``optimizer`` replaces the one built from
    ``model`` and ``optim`` (e.g. per-group learning rates).
    """

    def __init__(self, model: nn.Module, task: TrainTask, batches: ResumableBatches | None, train: TrainConfig,
                 optim: OptimConfig, out_dir: str | os.PathLike | None, ctx: DistContext,
                 config_dict: dict[str, Any] | None = None, optimizer: torch.optim.Optimizer | None = None,
                 find_unused_parameters: bool = False):
        self.model = model.to(ctx.device)  # the unwrapped module (saved in checkpoints)
        self.task, self.batches, self.train, self.optim_cfg, self.ctx = task, batches, train, optim, ctx
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.config_dict = config_dict or {}
        self.optimizer = optimizer or build_optimizer(self.model, optim)
        self.total_steps = self._total_steps()
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, optim)
        self.ckpts = CheckpointManager(self.out_dir / "checkpoints", train.keep_last) if self.out_dir else None
        self.step = 0
        self.epoch = 0  # finished epochs (epoch runs)
        self.selection = Selection(train.select_metric, train.select_mode, train.patience)
        self.best_state: dict[str, torch.Tensor] | None = None  # in memory when there is no run folder
        chosen = task.parameters()
        self.params = list(chosen) if chosen is not None else [p for p in self.model.parameters() if p.requires_grad]
        runner: nn.Module = self.model
        if train.compile:
            runner = torch.compile(runner)  # type: ignore[assignment]
        if ctx.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            runner = DDP(runner, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                         find_unused_parameters=find_unused_parameters)
        self.runner = runner
        self.history: list[StepLog] = []

    def _total_steps(self) -> int:
        """The lr schedule's length: max_steps, or epochs x optimiser steps per epoch."""
        if self.train.epochs is None:
            return self.train.max_steps
        per_epoch = self.task.steps_per_epoch()
        return self.train.epochs * max(1, math.ceil(per_epoch / self.train.grad_accum))

    # ---- checkpoints ----
    def model_state(self) -> dict[str, torch.Tensor]:
        """The weights a checkpoint keeps (frozen parts left out when the model is a TrainableState)."""
        return model_state(self.model)

    def load_model_state(self, state: dict[str, torch.Tensor], source: str) -> None:
        load_model_state(self.model, state, source)

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "epoch": self.epoch,
            "model": self.model_state(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "loader": self.batches.state_dict() if self.batches is not None else {},
            "selection": self.selection.state_dict(),
            "task": self.task.state_dict(),
            "config": self.config_dict,
            "world_size": self.ctx.world_size,
        }

    def save_checkpoint(self) -> Path | None:
        """Every rank's RNG state is gathered; rank 0 writes the file."""
        rngs = all_gather_objects(capture_rng(), self.ctx)
        path = None
        if self.ctx.is_main and self.ckpts is not None:
            state = self.state_dict()
            state["rng"] = rngs
            path = self.ckpts.save(state, self.step)
        barrier(self.ctx)
        return path

    def load_checkpoint(self, path: str | os.PathLike, state: dict[str, Any] | None = None) -> None:
        """Restore the run from ``path`` (or from its already read ``state``)."""
        if state is None:
            state = CheckpointManager.load(path, map_location="cpu")
        self.load_model_state(state["model"], str(path))
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.batches is not None:
            self.batches.load_state_dict(state["loader"])
        self.selection.load_state_dict(state.get("selection") or {})
        self.task.load_state_dict(state.get("task") or {})
        self.step = int(state["step"])
        self.epoch = int(state.get("epoch", 0))
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
        found = self.ckpts.load_latest() if self.ckpts is not None else None
        if found is None:
            return False
        self.load_checkpoint(*found)
        return True

    # ---- the best dev weights ----
    def _keep_best(self, dev: dict[str, float]) -> None:
        state = {k: v.detach().cpu().clone() for k, v in self.model_state().items()}
        if self.out_dir is None:
            self.best_state = state
        elif self.ctx.is_main:
            buf = io.BytesIO()
            torch.save({"model": state, "epoch": self.epoch, "step": self.step,
                        "dev": {k: float(v) for k, v in dev.items()}}, buf)
            atomic_write_bytes(self.out_dir / "best.pt", buf.getvalue())

    def load_best(self) -> dict[str, Any]:
        """Put the best dev weights back into the model; returns {"epoch", "step", "dev"} of that evaluation."""
        if self.out_dir is None:
            if self.best_state is None:
                raise CheckpointError("no best dev weights: the run never evaluated")
            self.load_model_state(self.best_state, "best dev weights")
            return {"epoch": self.selection.best_epoch, "step": self.selection.best_step, "dev": self.selection.best_dev}
        path = self.out_dir / "best.pt"
        if not path.is_file():
            raise CheckpointError(f"{path}: missing; the run has no best dev checkpoint")
        best = torch.load(path, map_location="cpu", weights_only=True)
        self.load_model_state(best["model"], str(path))
        return {"epoch": int(best["epoch"]), "step": int(best["step"]), "dev": best["dev"]}

    # ---- training ----
    def _batch_source(self) -> Iterator[Any]:
        if self.batches is not None:
            return iter(self.batches)
        return iter(self.task.train_batches(self.epoch, self.ctx.rank, self.ctx.world_size))

    def _train_step(self, micro: list[Any], t_start: float) -> tuple[StepLog, list[Any]]:
        """One optimiser step over ``micro`` (grad_accum batches); returns its log and the task's outputs."""
        ctx, cfg = self.ctx, self.train
        t0 = time.perf_counter()
        prepared = [self.task.prepare(b, self.step, ctx.device) for b in micro]
        counts = torch.stack([torch.as_tensor(c, dtype=torch.float64, device=ctx.device).reshape(())
                              for _, c, _ in prepared])
        frames = torch.stack([torch.as_tensor(f, dtype=torch.float64, device=ctx.device).reshape(())
                              for _, _, f in prepared])
        totals = all_reduce_sum(torch.stack([counts.sum(), frames.sum()]), ctx)
        denom = totals[0].clamp_min(1.0).float()
        loss_sum = torch.zeros((), device=ctx.device)
        outputs = []
        for i, (inputs, _, _) in enumerate(prepared):
            last = i == len(prepared) - 1
            sync = contextlib.nullcontext() if (last or not ctx.distributed) else self.runner.no_sync()
            with sync:
                with autocast_context(ctx.device, cfg.precision):
                    out, extra = self.task.forward(self.runner, inputs)  # scalar loss over this micro-batch
                # DDP averages gradients over ranks; * world_size turns that into the global sum / denom
                (out.float() * (ctx.world_size / denom)).backward()
            loss_sum = loss_sum + out.detach().float()
            outputs.append(extra)
        if self.optim_cfg.grad_clip > 0:
            gnorm = torch.nn.utils.clip_grad_norm_(self.params, self.optim_cfg.grad_clip)
        else:
            gnorm = torch.linalg.vector_norm(torch.stack([p.grad.norm() for p in self.params if p.grad is not None]))
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        loss = float(all_reduce_sum(loss_sum, ctx) / denom)
        if not math.isfinite(loss):
            raise FloatingPointError(f"{self.task.name} step {self.step}: loss is {loss}; lower the lr or check "
                                     "the data")
        dt = time.perf_counter() - t0
        return StepLog(self.step, loss, lr, float(gnorm), float(totals[1]) / max(dt, 1e-9),
                       time.perf_counter() - t_start), outputs

    def _evaluate(self, since: list[StepLog], t_start: float) -> bool:
        """Dev metrics, selection, best weights; returns True when early stopping says stop."""
        dev = self.task.evaluate()
        self.model.train()
        improved = self.selection.update(dev, self.epoch, self.step)
        if improved and self.task.keeps_best:
            self._keep_best(dev)
        plateau = self.train.plateau_patience
        if not improved and plateau and self.selection.bad % plateau == 0:
            # the schedule recomputes every lr from base_lrs, so the cut goes there (and is checkpointed with it)
            f = self.train.plateau_factor
            self.scheduler.base_lrs = [lr * f for lr in self.scheduler.base_lrs]
            for g in self.optimizer.param_groups:
                g["lr"] *= f
        row: dict[str, Any] = {"epoch": self.epoch, "step": self.step,
                               "train_loss": sum(e.loss for e in since) / max(len(since), 1)}
        row.update({f"dev_{k}": float(v) for k, v in dev.items()})
        row["elapsed_s"] = time.perf_counter() - t_start
        self.selection.history.append({k: float(v) for k, v in row.items()})
        if self._dev_metrics is not None:
            self._dev_metrics.log(row)
        if self.ctx.is_main:
            keys = [self.selection.metric] if self.selection.metric else list(self.task.show_metrics)
            shown = "".join(f"  dev_{k} {dev[k]:.4f}" for k in keys if k in dev)
            where = f"epoch {self.epoch}" if self.train.epochs is not None else f"step {self.step}"
            print(f"{self.task.name} {where}: train_loss {row['train_loss']:.4f}{shown}"
                  f"{'  (best)' if improved and self.selection.metric else ''}", file=sys.stderr)
        return self.selection.should_stop()

    def _done(self) -> bool:
        if self.selection.should_stop():
            return True
        if self.train.epochs is not None:
            return self.epoch >= self.train.epochs
        return self.step >= self.train.max_steps

    def fit(self, step_budget: int | None = None,
            on_log: Callable[[StepLog], None] | None = None) -> list[StepLog]:
        """Train until the step or epoch budget is spent, early stopping says stop, or for at most
        ``step_budget`` more steps (e.g. a job's time slot).

        Returns the step logs of this call (every step, also those between CSV rows).
        """
        cfg = self.train
        run = self._open_run(step_budget, on_log)
        self.model.train()
        try:
            if cfg.epochs is None:
                self._fit_steps(run)
            else:
                self._fit_epochs(run)
        finally:
            run.close()
        self.history.extend(run.logs)
        return run.logs

    def _fit_steps(self, run: "_Run") -> None:
        """Step budget: ``max_steps`` optimiser steps over an endless stream or as many task passes as it takes;
        a checkpoint every ``ckpt_every`` steps and at the end."""
        while not self._done() and self.step < run.end:
            it, pass_start = self._batch_source(), self.step
            while self.step < run.end:
                micro = [b for _, b in zip(range(self.train.grad_accum), it)]
                if len(micro) < self.train.grad_accum:  # the pass is over (a partial accumulation is dropped)
                    break
                stop = self._step(micro, run)
                if self.step % self.train.ckpt_every == 0 or self.step == run.end or stop:
                    self.save_checkpoint()
                if stop:
                    return
            if self.batches is None and self.step < run.end:  # the task's pass ended: the next one
                if self.step == pass_start:
                    raise ConfigError(f"task {self.task.name!r}: a pass over the training data gave no full step "
                                      f"({self.train.grad_accum} batches)")
                self.epoch += 1

    def _fit_epochs(self, run: "_Run") -> None:
        """Epoch budget: ``epochs`` passes of ``task.train_batches``; dev evaluation (unless ``eval_every``
        sets its own interval) and a checkpoint at the end of every epoch."""
        while not self._done() and self.step < run.end:
            it = self._batch_source()
            while self.step < run.end:
                micro = [b for _, b in zip(range(self.train.grad_accum), it)]
                if len(micro) < self.train.grad_accum:  # the epoch is over (a partial accumulation is dropped)
                    break
                if self._step(micro, run):
                    return
            if self.step >= run.end:
                return
            self.epoch += 1
            if run.bar is not None:
                run.bar.update(1)
            if run.evaluates and self.train.eval_every == 0:
                self._evaluate(run.since_eval, run.t_start)
                run.since_eval = []
            self.save_checkpoint()

    def _step(self, micro: list[Any], run: "_Run") -> bool:
        """One optimiser step and what follows it: the task's after_step, logs, the CSV row, a dev evaluation
        every ``eval_every`` steps. Returns True when early stopping says stop."""
        cfg = self.train
        entry, outputs = self._train_step(micro, run.t_start)
        self.task.after_step(outputs, micro, self.epoch)
        run.logs.append(entry)
        run.window.append(entry)
        run.since_eval.append(entry)
        if run.on_log is not None:
            run.on_log(entry)
        if run.bar is not None:
            if cfg.epochs is None:
                run.bar.update(1)
            run.bar.set_postfix(loss=f"{entry.loss:.4f}", lr=f"{entry.lr:.2e}", fps=f"{entry.frames_per_s:,.0f}")
        if run.steps is not None and (self.step % cfg.log_every == 0 or self.step == run.end or self.step == 1):
            # one row per interval: the mean loss / grad norm / throughput of the steps since the last row, so
            # the curve shows the trend rather than one batch's luck
            n = len(run.window)
            run.steps.log({"step": self.step, "loss": sum(e.loss for e in run.window) / n, "lr": entry.lr,
                           "grad_norm": sum(e.grad_norm for e in run.window) / n,
                           "frames_per_s": sum(e.frames_per_s for e in run.window) / n,
                           "elapsed_s": entry.elapsed_s})
            run.window = []
        if run.evaluates and cfg.eval_every > 0 and self.step % cfg.eval_every == 0:
            stop = self._evaluate(run.since_eval, run.t_start)
            run.since_eval = []
            return stop
        return False

    def _open_run(self, step_budget: int | None, on_log: Callable[[StepLog], None] | None) -> "_Run":
        """The logs, progress bar and budget of one :meth:`fit` call."""
        ctx, cfg = self.ctx, self.train
        by_steps = cfg.epochs is None
        evaluates = self.task.evaluates() and (not by_steps or cfg.eval_every > 0)
        # A task that names a ``dev_log`` file keeps its per-interval step rows in metrics.csv and writes its
        # dev rows there; otherwise an evaluating run's metrics.csv holds the dev rows.
        dev_log = self.task.dev_log if evaluates else None
        end = cfg.max_steps if by_steps else math.inf
        if step_budget is not None:
            end = min(end, self.step + step_budget)
        steps = dev = None
        if ctx.is_main and self.out_dir is not None:
            if not evaluates or dev_log is not None:
                steps = MetricsLogger(self.out_dir, ["step", "loss", "lr", "grad_norm", "frames_per_s", "elapsed_s"],
                                      resume_step=self.step)
            if evaluates:
                fields = ["epoch", "step", "train_loss"] + [f"dev_{k}" for k in self.task.log_metrics] + ["elapsed_s"]
                dev = MetricsLogger(self.out_dir, fields, resume_step=self.step, tensorboard=False,
                                    filename=dev_log or "metrics.csv")
        self._dev_metrics = dev
        bar = None
        if ctx.is_main and cfg.progress and not self._done() and end > self.step:
            from tqdm.auto import tqdm

            bar = tqdm(total=self.total_steps if by_steps else cfg.epochs,
                       initial=self.step if by_steps else self.epoch, desc=self.task.name,
                       unit="step" if by_steps else "epoch", dynamic_ncols=True, file=sys.stderr)
        return _Run(end=end, evaluates=evaluates, steps=steps, dev=dev, bar=bar, on_log=on_log,
                    t_start=time.perf_counter())


@dataclass
class _Run:
    """What one :meth:`Trainer.fit` call carries from step to step."""

    end: float  # the step this call stops at (inf: the epoch budget decides)
    evaluates: bool  # the task evaluates on dev in this run
    steps: MetricsLogger | None  # per-interval step rows (metrics.csv), None when the dev rows go there
    dev: MetricsLogger | None  # dev rows
    bar: Any  # tqdm bar on rank 0, or None
    on_log: Callable[[StepLog], None] | None
    t_start: float
    logs: list[StepLog] = field(default_factory=list)  # every step of this call
    window: list[StepLog] = field(default_factory=list)  # steps since the last CSV row
    since_eval: list[StepLog] = field(default_factory=list)  # steps since the last evaluation

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        for logger in (self.steps, self.dev):
            if logger is not None:
                logger.close()
