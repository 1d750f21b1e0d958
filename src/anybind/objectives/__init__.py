"""Objectives: standalone losses over a dict of modality → features, returning named terms.

`build_objective(config)` builds the one a run config selects (`objective.type`):
infonce (CLIP, optionally tiled and per-pair scaled), siglip, symile, cwcl. An objective may own
learnable parameters (SigLIP's temperature and bias, per-pair scales, Symile's missing
embeddings); the training loop optimises and checkpoints them with the space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from anybind.objectives.cwcl import CWCL, cwcl_loss, cwcl_weights
from anybind.objectives.infonce import (
    InfoNCE,
    PairScales,
    group_ids,
    info_nce,
    positive_targets,
    weighted_info_nce,
)

if TYPE_CHECKING:
    from anybind.config.schema import Config


def build_objective(config: Config) -> nn.Module:
    obj = config.objective
    pairs = config.pairs()
    init_scale = 1.0 / config.space.init_temperature
    scales = (
        PairScales(pairs, init_scale, config.space.max_logit_scale)
        if obj.scale == "per_pair"
        else None
    )
    if obj.type == "infonce":
        return InfoNCE(pairs, scales=scales, tiled=obj.tiled, tile=obj.tile)
    if obj.type == "cwcl":
        assert obj.anchor is not None  # checked by the config
        module = CWCL(pairs, obj.anchor)
        if scales is not None:
            module.scales = scales
        return module
    if obj.type == "siglip":
        from anybind.objectives.siglip import SigLIP

        return SigLIP(
            pairs,
            init_scale=obj.siglip_init_scale,
            init_bias=obj.siglip_init_bias,
            max_scale=config.space.max_logit_scale,
            tiled=obj.tiled,
            tile=obj.tile,
        )
    from anybind.objectives.symile import Symile

    return Symile(
        obj.symile_modalities or list(config.modalities),
        negatives=obj.symile_negatives,
        missing=obj.symile_missing,
        dim=config.space.dim,
    )


__all__ = [
    "CWCL",
    "InfoNCE",
    "PairScales",
    "build_objective",
    "cwcl_loss",
    "cwcl_weights",
    "group_ids",
    "info_nce",
    "positive_targets",
    "weighted_info_nce",
]
