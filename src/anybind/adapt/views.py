"""Dataset views that enforce the adaptation protocol.

`UnlabelledView` is what label-free methods (self-train, tent) receive: every label is removed, and
asking for labels raises, so a method cannot leak them by accident.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anybind.data.dataset import MultiModalDataset
from anybind.data.sample import Sample
from anybind.errors import AnybindError


class LabelLeakError(AnybindError):
    """A label-free method asked for labels."""


class UnlabelledView(MultiModalDataset):
    def __init__(self, dataset: MultiModalDataset):
        samples = [Sample(values=s.values, id=s.id, meta=s.meta) for s in dataset.samples]
        super().__init__(samples, dataset.modalities, dataset.class_names)

    def labels(self) -> torch.Tensor:
        raise LabelLeakError("this method is label-free: its data view has no labels")

    def batch(self, indices):  # type: ignore[no-untyped-def]
        batch = super().batch(indices)
        batch.pop("label", None)
        return batch


def subset(dataset: MultiModalDataset, indices: Sequence[int]) -> MultiModalDataset:
    """The samples at `indices` (in that order), sharing the loaded tensors."""
    return MultiModalDataset(
        [dataset.samples[i] for i in indices], dataset.modalities, dataset.class_names
    )


def modality_tensor(dataset: MultiModalDataset, modality: str) -> torch.Tensor:
    """All samples' preprocessed inputs of one modality, stacked: (N, ...)."""
    if not bool(dataset.has(modality).all()):
        raise AnybindError(f"every adaptation sample needs the modality '{modality}'")
    return dataset.batch(range(len(dataset)))[modality]
