"""SigLIP: pairwise sigmoid loss (Zhai et al. 2023, arXiv:2303.15343).

Every (i, j) pair of a batch is an independent binary problem — positive when the two share a
group (or i = j), negative otherwise — scored by σ(t·a_iᵀb_j + b) with a learnable temperature t
(stored as log t, initialised at ln 10) and bias b (initialised at −10, so that the many
negatives start near their target). The loss module owns t and b; the space's shared scale is not
used by this objective.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from anybind.objectives.base import OBJECTIVES, Objective
from anybind.objectives.infonce import present_pairs

if TYPE_CHECKING:
    from anybind.config.schema import Config, SigLIPConfig


@OBJECTIVES.register("siglip")
class SigLIP(Objective):
    def __init__(
        self,
        pairs: list[tuple[str, str]],
        *,
        init_scale: float = 10.0,
        init_bias: float = -10.0,
        max_scale: float = 100.0,
        tiled: bool = False,
        tile: int = 1024,
    ):
        super().__init__()
        self.pairs = pairs
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))
        self.max_log = math.log(max_scale)
        self.tiled = tiled
        self.tile = tile

    @classmethod
    def from_config(cls, config: Config) -> SigLIP:
        obj: SigLIPConfig = config.objective  # type: ignore[assignment]
        return cls(
            config.pairs(),
            init_scale=obj.init_scale,
            init_bias=obj.init_bias,
            max_scale=config.space.max_logit_scale,
            tiled=obj.tiled,
            tile=obj.tile,
        )

    def scale(self) -> torch.Tensor:
        return self.log_scale.clamp(0.0, self.max_log).exp()

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        from anybind.objectives.tiled import sigmoid_loss, tiled_sigmoid_loss

        terms: dict[str, torch.Tensor] = {}
        for a, b, both in present_pairs(self.pairs, features, masks, min_rows=1):
            g = groups[both] if groups is not None else None
            fa, fb = features[a][both], features[b][both]
            if self.tiled:
                loss = tiled_sigmoid_loss(fa, fb, self.scale(), self.bias, g, tile=self.tile)
            else:
                loss = sigmoid_loss(fa, fb, self.scale(), self.bias, g)
            terms[f"{a}~{b}_loss"] = loss
        return terms

    @property  # type: ignore[override]
    def local(self) -> bool:
        """Whether `local_forward` applies: the dense loss has a local form, the tiled one
        (square tiles around the diagonal) is computed over the gathered batch."""
        return not self.tiled

    def local_forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
        rows: slice,
    ) -> dict[str, torch.Tensor]:
        """This rank's share of every term under data parallelism: its rows of the gathered
        batch scored against every column, divided by the pair's global row count. The loss is
        a sum over (row, column) pairs, so the shares of all ranks add up to `forward`'s terms,
        value and gradient. Per rank the logits are (n_local, N), not (N, N)."""
        terms: dict[str, torch.Tensor] = {}
        for a, b, both in present_pairs(self.pairs, features, masks, min_rows=1):
            start, n = int(both[: rows.start].sum()), int(both[rows].sum())
            fa, fb = features[a][both], features[b][both]
            logits = self.scale() * fa[start : start + n] @ fb.T + self.bias
            if groups is None:
                positive = torch.zeros_like(logits, dtype=torch.bool)
                positive[torch.arange(n), torch.arange(start, start + n)] = True
            else:
                g = groups[both]
                positive = g[start : start + n, None] == g[None, :]
            signed = torch.where(positive, logits, -logits)
            terms[f"{a}~{b}_loss"] = -F.logsigmoid(signed).sum() / fa.shape[0]
        return terms
