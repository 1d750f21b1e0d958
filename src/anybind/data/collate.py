"""Collation: a list of samples → a batch dict with a presence mask per modality.

batch[m]          the modality's collated batch; absent rows hold the modality's placeholder
batch[f"{m}_mask"] bool (B,), True where the sample has modality m
batch["label"]    int64 (B,), -1 where unlabelled
batch["id"]       list[str]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from anybind.data.sample import Sample
from anybind.modalities import Modality


def collate(
    samples: list[Sample], modalities: dict[str, Modality], keep: Sequence[str] = ()
) -> dict[str, Any]:
    """`keep`: modalities the batch holds even when no sample has them (all-False mask), so that
    the batches of every rank of a distributed run hold the same keys."""
    batch: dict[str, Any] = {}
    for name, modality in modalities.items():
        mask = torch.tensor([name in s.values for s in samples], dtype=torch.bool)
        if not bool(mask.any()) and name not in keep:
            continue
        if not samples:
            batch[name] = modality.collate([modality.placeholder()])[:0]
            batch[f"{name}_mask"] = mask
            continue
        fill = modality.placeholder()
        batch[name] = modality.collate([s.values.get(name, fill) for s in samples])
        batch[f"{name}_mask"] = mask
    batch["label"] = torch.tensor([s.label for s in samples], dtype=torch.long)
    batch["id"] = [s.id for s in samples]
    return batch
