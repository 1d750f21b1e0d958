"""Normalisation layers as the tunable part of a tower (TENT, ReCLIP, AdaBN).

`norm_modules` finds BatchNorm/LayerNorm/GroupNorm layers; `norm_state` is their affine
parameters and running statistics (what a norm-only adaptation saves).
"""

from __future__ import annotations

import torch
from torch import nn

NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)
BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def norm_modules(module: nn.Module) -> dict[str, nn.Module]:
    return {name: m for name, m in module.named_modules() if isinstance(m, NORMS)}


def norm_parameters(module: nn.Module) -> list[nn.Parameter]:
    return [p for m in norm_modules(module).values() for p in m.parameters(recurse=False)]


def norm_state(module: nn.Module, prefix: str = "") -> dict[str, torch.Tensor]:
    out = {}
    for name, m in norm_modules(module).items():
        for key, value in m.state_dict().items():
            out[f"{prefix}{name}.{key}"] = value.detach().cpu().contiguous().clone()
    return out


def restart_batch_statistics(module: nn.Module) -> None:
    """Forget the source running statistics; later train-mode passes average the target's
    statistics cumulatively (momentum None) — AdaBN (Li et al. 2016)."""
    for m in module.modules():
        if isinstance(m, BATCH_NORMS):
            m.reset_running_stats()
            m.momentum = None


def freeze_except(module: nn.Module, trainable: list[nn.Parameter]) -> None:
    keep = {id(p) for p in trainable}
    for p in module.parameters():
        p.requires_grad_(id(p) in keep)
