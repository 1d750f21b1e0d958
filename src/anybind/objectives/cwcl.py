"""CWCL: continuously weighted contrastive loss (Srinivasa et al. 2023, arXiv:2309.14580).

Aligning a new modality to a frozen one with 0/1 targets treats every other sample in the batch
as a pure negative, although many are similar. CWCL weights each pair by how similar the two
samples are *within the frozen modality*: w_ij = (1 + v_iᵀv_j) / 2 ∈ [0, 1] for unit-norm frozen
(anchor) embeddings v, and uses w, normalised per row (and per column for the other direction),
as soft targets of the symmetric cross-entropy. The weights carry no gradient.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from anybind.objectives.base import OBJECTIVES, Objective
from anybind.objectives.infonce import PairScales, present_pairs, weighted_info_nce

if TYPE_CHECKING:
    from anybind.config.schema import Config, CWCLConfig


def cwcl_weights(anchor: torch.Tensor) -> torch.Tensor:
    """(N, D) unit-norm anchor embeddings → (N, N) weights in [0, 1], ones on the diagonal."""
    anchor = anchor.detach()
    return ((anchor @ anchor.T).clamp(-1, 1) + 1) / 2


def cwcl_loss(x: torch.Tensor, anchor: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Symmetric CWCL between a trainable modality x (N, D) and the frozen anchor (N, D)."""
    return weighted_info_nce(x, anchor, scale, cwcl_weights(anchor))


@OBJECTIVES.register("cwcl")
class CWCL(Objective):
    """One CWCL term per (modality, anchor) pair; rows lacking either modality are left out."""

    def __init__(self, pairs: list[tuple[str, str]], anchor: str):
        super().__init__()
        self.pairs = [(a, b) if b == anchor else (b, a) for a, b in pairs]
        self.anchor = anchor
        self.scales: PairScales | None = None  # when objective.scale is per_pair

    @classmethod
    def from_config(cls, config: Config) -> CWCL:
        obj: CWCLConfig = config.objective  # type: ignore[assignment]
        module = cls(config.pairs(), obj.anchor)
        if obj.scale == "per_pair":
            module.scales = PairScales.from_config(config)
        return module

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for m, anchor, both in present_pairs(self.pairs, features, masks):
            s = self.scales(m, anchor) if self.scales is not None else scale
            terms[f"{m}~{anchor}_loss"] = cwcl_loss(features[m][both], features[anchor][both], s)
        return terms
