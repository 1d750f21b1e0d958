"""The optimiser of a training run: AdamW groups and the warmup-cosine schedule
(anybind.schedules)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anybind.config import Config
from anybind.schedules import warmup_cosine
from anybind.space import Space


def param_groups(space: Space, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in space.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("logit_scale") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def objective_param_groups(objective: nn.Module) -> list[dict[str, Any]]:
    """The objective's own learnable parameters (scales, biases): no weight decay."""
    params = [p for p in objective.parameters() if p.requires_grad]
    return [{"params": params, "weight_decay": 0.0}] if params else []


def build_optimizer(
    space: Space, objective: nn.Module, config: Config, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    optimizer = torch.optim.AdamW(
        param_groups(space, config.optim.weight_decay) + objective_param_groups(objective),
        lr=config.optim.lr,
        betas=config.optim.betas,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.optim.warmup_steps, total_steps)
    )
    return optimizer, schedule
