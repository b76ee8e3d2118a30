"""The one optimiser builder (Adam/AdamW over named parameter groups, each with its own lr) and the schedules.

Every workload builds its optimiser here: pretraining (BERT-style decay exclusions, s3prl's warm-up + linear
decay), the probes (head / layer weights / upstream at their own rates), the fusion heads (MMSA's Adam with
a smaller rate for the text encoder), TEASEL and the small text LMs (Hugging Face's cosine schedule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable

import torch
from torch import nn

from ..errors import ConfigError
from ..validate import GRAD_CLIP, LR, WEIGHT_DECAY, check_ranges, reals

ADAM_BETA = reals(0.0, 1.0, "(an Adam moment decay)", high_open=True)

SCHEDULES = ("linear", "cosine", "constant")
ALGORITHMS = ("adamw", "adam")


@dataclass
class OptimConfig:
    """Optimiser and schedule (defaults: s3prl's Mockingjay/TERA/AALBERT pretraining runs)."""

    lr: float = 2e-4  # peak learning rate, reached at the end of warm-up (groups may set their own)
    weight_decay: float = 0.01  # decay on weight matrices only (not biases or LayerNorm)
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.999  # Adam second-moment decay
    eps: float = 1e-8  # Adam denominator floor
    warmup_ratio: float = 0.07  # fraction of total steps with a linear ramp 0 -> lr
    # after warm-up: "linear" decay to 0 at the last step (s3prl), "cosine" half-cosine to 0 (Hugging Face's
    # get_cosine_schedule_with_warmup, which TEASEL and the small LMs were trained with), or "constant"
    schedule: str = "linear"
    grad_clip: float = 5.0  # max global grad norm; 0 disables clipping
    # "adamw": decoupled weight decay (BERT, s3prl); "adam": L2 decay added to the gradient, as MMSA's
    # torch.optim.Adam trains the fusion heads (the two agree when weight_decay is 0)
    algorithm: str = "adamw"

    def __post_init__(self) -> None:
        check_ranges(self, "optim", {
            "lr": LR, "weight_decay": WEIGHT_DECAY, "beta1": ADAM_BETA, "beta2": ADAM_BETA,
            "eps": reals(0.0, 1.0, "(Adam's denominator floor)", low_open=True),
            "warmup_ratio": reals(0.0, 1.0, "(a fraction of the steps)", high_open=True), "grad_clip": GRAD_CLIP,
        })
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.algorithm not in ALGORITHMS:
            raise ConfigError(f"optim.algorithm must be one of {', '.join(ALGORITHMS)}, got {self.algorithm!r}")


def param_groups(modules: nn.Module, weight_decay: float, **extra: Any) -> list[dict]:
    """Two groups: decayed weight matrices; undecayed biases, LayerNorm and other 1-D parameters.

    ``extra`` (e.g. ``lr=1e-3``) is copied into both groups. Empty groups are kept (callers drop them).
    """
    decay, no_decay = [], []
    seen: set[int] = set()
    for mod_name, module in modules.named_modules():
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if p.dim() < 2 or isinstance(module, (nn.LayerNorm, nn.GroupNorm)) or name.endswith("bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    return [
        {"params": decay, "weight_decay": weight_decay, **extra},
        {"params": no_decay, "weight_decay": 0.0, **extra},
    ]


def build_optimizer(model: nn.Module | None, config: OptimConfig,
                    groups: Iterable[dict] | None = None) -> torch.optim.Optimizer:
    """Adam(W) over ``groups`` (each a dict with ``params`` and optionally its own ``lr`` / ``weight_decay``),
    or, without groups, over ``model``'s trainable parameters split by :func:`param_groups`.

    Groups without parameters are dropped; none left is a ConfigError.
    """
    if groups is None:
        if model is None:
            raise ConfigError("build_optimizer: give a model or parameter groups")
        groups = param_groups(model, config.weight_decay)
    groups = [g for g in groups if len(g["params"])]
    if not groups:
        raise ConfigError("the model has no trainable parameters")
    cls = torch.optim.AdamW if config.algorithm == "adamw" else torch.optim.Adam
    first = groups[0]["params"][0]
    return cls(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps,
               weight_decay=config.weight_decay, **adamw_options(first.device))


def adamw_options(device: torch.device | str) -> dict[str, Any]:
    """Implementation flags for Adam(W) on ``device``: the fused kernel on CPU, torch's default elsewhere.

    On CPU the fused kernel is the fastest of the three implementations (per-parameter loop, ``foreach``,
    ``fused``) for clip + step on mockingjay-base, and ``foreach`` the slowest; docs/speed.md has the timings and
    the command. The state (exp_avg, exp_avg_sq, step) is the same in every implementation, so checkpoints
    move between them. CUDA keeps torch's default (foreach) until measured there.
    """
    if torch.device(device).type == "cpu":
        return {"fused": True}
    return {}


def warmup_steps(total_steps: int, warmup_ratio: float, schedule: str = "linear") -> int:
    """Warm-up length: rounded for s3prl's linear schedule, floored for Hugging Face's cosine one."""
    if schedule == "cosine":
        return int(warmup_ratio * total_steps)
    return int(round(total_steps * warmup_ratio))


def lr_factor(step: int, total_steps: int, warmup_ratio: float, schedule: str = "linear") -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based).

    - "linear" / "constant" (s3prl): warm-up ``(step + 1) / warmup``, then linear decay to 0 or constant.
    - "cosine" (Hugging Face's ``get_cosine_schedule_with_warmup``, expression for expression, so runs trained
      with it reproduce): warm-up ``step / warmup`` from 0, then ``0.5 (1 + cos(pi progress))``.
    """
    warmup = warmup_steps(total_steps, warmup_ratio, schedule)
    if schedule == "cosine":
        if step < warmup:
            return float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total_steps - warmup))
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return max(0.0, (total_steps - step) / max(1, total_steps - warmup))


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int, config: OptimConfig
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR following :func:`lr_factor`; its state_dict is the step count (checkpointable)."""
    if total_steps < 1:
        raise ConfigError(f"total steps must be >= 1, got {total_steps}")
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, config.warmup_ratio, config.schedule)
    )
