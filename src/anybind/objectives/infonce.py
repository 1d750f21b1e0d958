"""Symmetric InfoNCE (CLIP) over modality pairs, with multi-positive targets.

CLIP (Radford et al. 2021, arXiv:2103.00020): for unit-norm a_i, b_j and scale s,
logits_ij = s·a_iᵀb_j and the loss is the mean of the row-wise and column-wise cross-entropies.
Multi-positive (UniCL, Yang et al. 2022, arXiv:2204.03610): when samples share a group (a label
or an identical caption) every member of the group is a positive; the target row is uniform over
the positives. Without it, two images of a "7" in one batch are pushed apart and training fights
itself.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from anybind.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from anybind.config.schema import Config, InfoNCEConfig


def positive_targets(
    groups: torch.Tensor | None, n: int, device: torch.device, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """(n, n) row-stochastic targets: uniform over samples of the same group (self included)."""
    if groups is None:
        return torch.eye(n, device=device, dtype=dtype)
    same = (groups[:, None] == groups[None, :]).to(dtype)
    return same / same.sum(dim=1, keepdim=True)


def info_nce(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor | None = None
) -> torch.Tensor:
    """Symmetric InfoNCE between paired rows of a (N, D) and b (N, D)."""
    logits = scale * a @ b.T  # (N, N)
    if groups is None:  # one positive per row: index targets, no N×N target matrix
        labels = torch.arange(a.shape[0], device=a.device)
        return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    targets = positive_targets(groups, a.shape[0], a.device, logits.dtype)
    loss_ab = -(targets * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_ba = -(targets.T * logits.log_softmax(dim=0)).sum(dim=0).mean()
    return (loss_ab + loss_ba) / 2


def weighted_info_nce(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """Symmetric InfoNCE with continuous targets: weights (N, N) ≥ 0, weights[i, j] is how much
    b_j counts as a positive of a_i. Row targets are weights normalised per row, column targets
    weights normalised per column. With 0/1 same-group weights this is `info_nce`."""
    logits = scale * a @ b.T  # (N, N)
    rows = weights / weights.sum(dim=1, keepdim=True)
    cols = weights / weights.sum(dim=0, keepdim=True)
    loss_ab = -(rows * logits.log_softmax(dim=1)).sum(dim=1).mean()
    loss_ba = -(cols * logits.log_softmax(dim=0)).sum(dim=0).mean()
    return (loss_ab + loss_ba) / 2


class PairScales(nn.Module):
    """One learnable temperature per modality pair, stored as log(1/τ) and clamped like the
    space's shared one. Used when `objective.scale: per_pair`."""

    def __init__(self, pairs: list[tuple[str, str]], init_scale: float, max_scale: float):
        super().__init__()
        self.max_log = math.log(max_scale)
        self.log_scales = nn.ParameterDict(
            {pair_key(a, b): nn.Parameter(torch.tensor(math.log(init_scale))) for a, b in pairs}
        )

    @classmethod
    def from_config(cls, config: Config) -> PairScales:
        """One scale per configured pair, initialised at 1/space.init_temperature."""
        space = config.space
        return cls(config.pairs(), 1.0 / space.init_temperature, space.max_logit_scale)

    def forward(self, a: str, b: str) -> torch.Tensor:
        return self.log_scales[pair_key(a, b)].clamp(0.0, self.max_log).exp()


def pair_key(a: str, b: str) -> str:
    return f"{a}~{b}"


def present_pairs(
    pairs: list[tuple[str, str]],
    features: dict[str, torch.Tensor],
    masks: dict[str, torch.Tensor],
    min_rows: int = 2,
) -> Iterator[tuple[str, str, torch.Tensor]]:
    """The pairs that a batch can score: (a, b, rows where both are present), skipping pairs
    with fewer than `min_rows` such rows."""
    for a, b in pairs:
        if a not in features or b not in features:
            continue
        both = masks[a] & masks[b]
        if int(both.sum()) >= min_rows:
            yield a, b, both


@OBJECTIVES.register("infonce")
class InfoNCE(Objective):
    """Sum of symmetric InfoNCE terms, one per configured modality pair.

    Only rows where both modalities of a pair are present take part in that pair's term; a pair
    with fewer than two such rows contributes nothing in that batch. `tiled` computes each term
    without holding the N×N logits (anybind.objectives.tiled), with the same value and gradients.
    """

    def __init__(
        self,
        pairs: list[tuple[str, str]],
        *,
        scales: PairScales | None = None,
        tiled: bool = False,
        tile: int = 1024,
    ):
        super().__init__()
        self.pairs = pairs
        self.scales = scales
        self.tiled = tiled
        self.tile = tile

    @classmethod
    def from_config(cls, config: Config) -> InfoNCE:
        obj: InfoNCEConfig = config.objective  # type: ignore[assignment]
        return cls(
            config.pairs(),
            scales=PairScales.from_config(config) if obj.scale == "per_pair" else None,
            tiled=obj.tiled,
            tile=obj.tile,
        )

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        terms: dict[str, torch.Tensor] = {}
        for a, b, both in present_pairs(self.pairs, features, masks):
            g = groups[both] if groups is not None else None
            s = self.scales(a, b) if self.scales is not None else scale
            if self.tiled:
                from anybind.objectives.tiled import tiled_info_nce

                loss = tiled_info_nce(features[a][both], features[b][both], s, g, tile=self.tile)
            else:
                loss = info_nce(features[a][both], features[b][both], s, g)
            terms[f"{pair_key(a, b)}_loss"] = loss
        return terms

    local = True

    def local_forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
        rows: slice,
    ) -> dict[str, torch.Tensor]:
        """This rank's share of every term under data parallelism (open_clip's local loss):
        the features are gathered from every rank, `rows` are this rank's rows of the gathered
        batch; its rows are scored as queries against all keys, in both directions, and each
        term is divided by the pair's global row count. Summed over ranks, the shares are
        `forward`'s terms, value and gradient (anybind.objectives.distributed). Per rank the
        logits are (n_local, N), not (N, N)."""
        from anybind.objectives.distributed import row_info_nce_sum
        from anybind.objectives.tiled import tiled_row_info_nce

        terms: dict[str, torch.Tensor] = {}
        for a, b, both in present_pairs(self.pairs, features, masks):
            s = self.scales(a, b) if self.scales is not None else scale
            start, n = int(both[: rows.start].sum()), int(both[rows].sum())
            keys_a, keys_b = features[a][both], features[b][both]
            g = groups[both] if groups is not None else None
            local_g = g[start : start + n] if g is not None else None
            if self.tiled:
                row_loss = functools.partial(tiled_row_info_nce, tile=self.tile)
            else:
                row_loss = row_info_nce_sum
            total = row_loss(
                keys_a[start : start + n], keys_b, s, local_g, g, positive_offset=start
            ) + row_loss(keys_b[start : start + n], keys_a, s, local_g, g, positive_offset=start)
            terms[f"{pair_key(a, b)}_loss"] = total / (2 * keys_a.shape[0])
        return terms


def group_ids(labels: torch.Tensor, captions: list[str] | None, mode: str) -> torch.Tensor | None:
    """Integer group per sample for multi-positive targets; unlabelled samples are their own group.

    mode: "label", "caption", "label_or_caption" (label when known, else caption) or "none".
    """
    n = labels.shape[0]
    if mode == "none":
        return None
    groups = torch.arange(n) + 1_000_000_000  # unique by default
    if mode in ("caption", "label_or_caption") and captions is not None:
        index: dict[str, int] = {}
        for i, c in enumerate(captions):
            if c is not None:
                groups[i] = 2_000_000_000 + index.setdefault(c, len(index))
    if mode in ("label", "label_or_caption"):
        known = labels >= 0
        groups[known] = labels[known]
    return groups
