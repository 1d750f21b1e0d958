"""The contract every objective keeps, and the registry the config's `objective.type` names.

An objective is an `nn.Module` that may own learnable parameters (a temperature, a bias, per-pair
scales, stand-in embeddings); the training loop optimises and checkpoints them with the space.
A new objective is one file: a subclass with `@OBJECTIVES.register(name)`, its `from_config`,
and its config section in `anybind.config.schema`.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from anybind.registry import Registry

if TYPE_CHECKING:
    from anybind.config.schema import Config


class Objective(nn.Module):
    """A loss over the unit-norm embeddings of one batch, as named terms that are summed.

    forward(features, masks, groups, scale):
      features: modality → (N, D) embeddings of the batch's rows (absent rows hold placeholders);
      masks: modality → (N,) bool, where the modality is present;
      groups: (N,) ids of rows that count as positives of each other (`objective.positives`),
        or None for the pair itself only;
      scale: the space's shared logit scale (objectives with their own scale ignore it);
      returns term name → scalar; an empty dict when no term applies to the batch.

    `local` says whether `local_forward(..., rows)` computes this rank's share of the terms
    from gathered features (data parallelism without the N×N logits on every rank).
    """

    local: ClassVar[bool] = False

    @classmethod
    @abstractmethod
    def from_config(cls, config: Config) -> Objective:
        """The objective a validated run config selects."""

    @abstractmethod
    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]: ...

    def local_forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
        rows: slice,
    ) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__} has no local form")


OBJECTIVES: Registry[type[Objective]] = Registry("objective type")
