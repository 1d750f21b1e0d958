"""Objectives: standalone losses over a dict of modality → features, returning named terms.

`build_objective(config)` builds the one a run config selects (`objective.type`, one of
`OBJECTIVES`): infonce (CLIP, optionally tiled and per-pair scaled), siglip, symile, cwcl. Each
keeps the `Objective` contract (anybind.objectives.base) and may own learnable parameters
(SigLIP's temperature and bias, per-pair scales, Symile's missing embeddings); the training loop
optimises and checkpoints them with the space.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anybind.objectives.base import OBJECTIVES, Objective
from anybind.objectives.cwcl import CWCL, cwcl_loss, cwcl_weights
from anybind.objectives.infonce import (
    InfoNCE,
    PairScales,
    group_ids,
    info_nce,
    positive_targets,
    weighted_info_nce,
)
from anybind.objectives.siglip import SigLIP
from anybind.objectives.symile import Symile

if TYPE_CHECKING:
    from anybind.config.schema import Config


def build_objective(config: Config) -> Objective:
    return OBJECTIVES.get(config.objective.type, key="objective.type").from_config(config)


__all__ = [
    "CWCL",
    "OBJECTIVES",
    "InfoNCE",
    "Objective",
    "PairScales",
    "SigLIP",
    "Symile",
    "build_objective",
    "cwcl_loss",
    "cwcl_weights",
    "group_ids",
    "info_nce",
    "positive_targets",
    "weighted_info_nce",
]
