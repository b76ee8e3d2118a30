"""Reusable training pieces: typed configs + overrides, AdamW schedule, checkpoints, DDP context, logs, trainer."""

from .checkpoint import CheckpointManager
from .rng import capture_rng, restore_rng, seed_everything
from ..config import apply_overrides, build, read_yaml, to_dict
from .distributed import DistContext, all_reduce_sum, init_distributed
from .loader import ResumableBatches
from .metrics import MetricsLogger, plot_loss_curve, read_metrics
from .optim import OptimConfig, build_optimizer, build_scheduler, lr_factor, param_groups
from .task import TrainableState, TrainTask
from .trainer import StepLog, TrainConfig, Trainer

__all__ = [
    "CheckpointManager", "DistContext", "MetricsLogger", "OptimConfig", "ResumableBatches", "StepLog",
    "TrainConfig", "TrainTask", "TrainableState", "Trainer", "all_reduce_sum", "apply_overrides", "build", "build_optimizer",
    "build_scheduler", "capture_rng", "init_distributed", "lr_factor", "param_groups", "plot_loss_curve",
    "read_metrics", "read_yaml", "restore_rng", "seed_everything", "to_dict",
]
