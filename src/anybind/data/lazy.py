"""The lazy dataset (`data.cache: none`): records in memory, each decoded when it is drawn.

A record is a few paths or short strings; its decoded tensors are not kept. `__getitem__` runs in
a DataLoader worker and never raises for bad data: a sample that cannot be decoded comes back as
a `BadSample` naming its file and row, and the collator and the loop decide (stop, or skip and
count). Labels and modality presence are known from the records alone, without decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from anybind.data.record import load_record, resolve_label
from anybind.data.sample import UNLABELLED, RawRecord, Sample
from anybind.errors import DataError
from anybind.modalities import Modality


@dataclass
class BadSample:
    """A record that failed to decode: where it is and why."""

    index: int
    detail: str
    path: str | None = None
    row: int | None = None

    @property
    def message(self) -> str:
        return str(self.error())

    def error(self) -> DataError:
        return DataError(self.detail, path=self.path, row=self.row)


class RecordDataset(torch.utils.data.Dataset):
    def __init__(
        self,
        records: Sequence[RawRecord],
        modalities: dict[str, Modality],
        class_names: Sequence[str] | None = None,
    ):
        self.records = list(records)
        self.modalities = modalities
        self.class_names = list(class_names) if class_names else None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample | BadSample:
        try:
            return load_record(self.records[index], self.modalities, self.class_names)
        except DataError as exc:
            return BadSample(index, exc.detail, exc.path, exc.row)

    def labels(self) -> torch.Tensor:
        """Each record's class index; a label that does not resolve counts as unlabelled here
        (decoding the record reports it by file and row)."""
        out = []
        for r in self.records:
            try:
                out.append(resolve_label(r.label, self.class_names, r))
            except DataError:
                out.append(UNLABELLED)
        return torch.tensor(out, dtype=torch.long)

    def has(self, modality: str) -> torch.Tensor:
        return torch.tensor(
            [r.values.get(modality) is not None for r in self.records], dtype=torch.bool
        )

    def ids(self) -> list[str]:
        return [r.id for r in self.records]

    def subset(self, indices: Sequence[int]) -> RecordDataset:
        return RecordDataset([self.records[i] for i in indices], self.modalities, self.class_names)
