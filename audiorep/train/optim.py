"""AdamW with BERT-style decay exclusions and the warm-up + linear-decay schedule of the published runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from ..errors import ConfigError


@dataclass
class OptimConfig:
    """Optimiser and schedule (defaults: s3prl's Mockingjay/TERA/AALBERT pretraining runs)."""

    lr: float = 2e-4  # peak learning rate, reached at the end of warm-up
    weight_decay: float = 0.01  # AdamW decay on weight matrices only (not biases or LayerNorm)
    beta1: float = 0.9  # Adam first-moment decay
    beta2: float = 0.999  # Adam second-moment decay
    eps: float = 1e-8  # Adam denominator floor
    warmup_ratio: float = 0.07  # fraction of total steps with a linear ramp 0 -> lr
    schedule: str = "linear"  # after warm-up: "linear" decay to 0 at the last step, or "constant"
    grad_clip: float = 5.0  # max global grad norm; <= 0 disables clipping

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"optim.lr must be positive, got {self.lr}")
        if not 0 <= self.warmup_ratio < 1:
            raise ConfigError(f"optim.warmup_ratio must lie in [0, 1), got {self.warmup_ratio}")
        if self.schedule not in ("linear", "constant"):
            raise ConfigError(f"optim.schedule must be 'linear' or 'constant', got {self.schedule!r}")


def param_groups(modules: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: decayed weight matrices; undecayed biases, LayerNorm and other 1-D parameters."""
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
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, config: OptimConfig) -> torch.optim.AdamW:
    """AdamW over ``model``'s trainable parameters with the decay exclusions above."""
    groups = param_groups(model, config.weight_decay)
    if not any(g["params"] for g in groups):
        raise ConfigError("the model has no trainable parameters")
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), eps=config.eps)


def lr_factor(step: int, total_steps: int, warmup_ratio: float, schedule: str = "linear") -> float:
    """Multiplier of the peak lr at optimiser step ``step`` (0-based): linear warm-up, then linear decay to 0."""
    warmup = int(round(total_steps * warmup_ratio))
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
