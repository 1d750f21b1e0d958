"""The dataset held in memory (`data.cache: memory`): every sample decoded once and kept.

It is filled by `anybind.data.loader.materialize`, which decodes the records of a lazy
`RecordDataset` in DataLoader workers; a bad sample is reported by file and row there, or, with
`skip_bad`, dropped and counted.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from anybind.data.collate import collate
from anybind.data.sample import Sample
from anybind.modalities import Modality


@dataclass
class LoadReport:
    loaded: int = 0
    skipped: int = 0
    reasons: list[str] = field(default_factory=list)  # the first few skip messages


class MultiModalDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        samples: list[Sample],
        modalities: dict[str, Modality],
        class_names: Sequence[str] | None = None,
    ):
        self.samples = samples
        self.modalities = modalities
        self.class_names = list(class_names) if class_names else None

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> Sample:
        return self.samples[index]

    def batch(self, indices: Iterable[int]) -> dict[str, Any]:
        return collate([self.samples[i] for i in indices], self.modalities)

    def labels(self) -> torch.Tensor:
        return torch.tensor([s.label for s in self.samples], dtype=torch.long)

    def has(self, modality: str) -> torch.Tensor:
        return torch.tensor([modality in s.values for s in self.samples], dtype=torch.bool)

    def without_labels(self) -> MultiModalDataset:
        """A view with every label removed (for methods that must not see labels)."""
        samples = [Sample(values=s.values, id=s.id, meta=s.meta) for s in self.samples]
        return MultiModalDataset(samples, self.modalities, self.class_names)

    def subset(self, indices: Sequence[int]) -> MultiModalDataset:
        return MultiModalDataset(
            [self.samples[i] for i in indices], self.modalities, self.class_names
        )

    def ids(self) -> list[str]:
        return [s.id for s in self.samples]
