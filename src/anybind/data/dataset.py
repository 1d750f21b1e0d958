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
from anybind.data.sample import UNLABELLED, RawRecord, Sample
from anybind.errors import DataError
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

    @classmethod
    def from_records(
        cls,
        records: Sequence[RawRecord],
        modalities: dict[str, Modality],
        *,
        class_names: Sequence[str] | None = None,
        skip_bad: bool = False,
        description: str = "loading",
        progress: bool = True,
        workers: int = 0,
    ) -> tuple[MultiModalDataset, LoadReport]:
        """Decode every record (in `workers` processes) and keep the samples."""
        from anybind.data.lazy import RecordDataset
        from anybind.data.loader import materialize

        lazy = RecordDataset(records, modalities, class_names)
        return materialize(
            lazy, skip_bad=skip_bad, workers=workers, progress=progress, description=description
        )


def load_record(
    record: RawRecord, modalities: dict[str, Modality], class_names: Sequence[str] | None
) -> Sample:
    values = {}
    for name, raw in record.values.items():
        if raw is None:
            continue  # absent modality: a normal case
        if name not in modalities:
            raise DataError(f"unknown modality '{name}'", path=record.path, row=record.row)
        modality = modalities[name]
        # a value that is a file path names itself in errors; the record adds its file and row
        from_file = modality.is_file(raw)
        try:
            values[name] = modality.load(raw, source=None if from_file else record.path)
        except DataError as exc:
            if exc.row is None and record.row is not None:
                message = exc.detail
                if record.path is not None and exc.path not in (None, record.path):
                    message = f"{exc.path}: {message}"
                raise DataError(message, path=record.path or exc.path, row=record.row) from exc
            raise
    if not values:
        raise DataError("the sample has no modality present", path=record.path, row=record.row)
    label = resolve_label(record.label, class_names, record)
    return Sample(values=values, label=label, id=record.id)


def resolve_label(raw: Any, class_names: Sequence[str] | None, record: RawRecord) -> int:
    """int-like labels are class indices; strings are looked up in class_names (or parsed)."""
    if raw is None or (isinstance(raw, float) and raw != raw) or raw == "":
        return UNLABELLED
    if isinstance(raw, bool):  # JSON true/false: int(True) would silently be class 1
        raise DataError(
            f"label {str(raw).lower()} is neither a class index nor one of the class names",
            path=record.path,
            row=record.row,
        )
    if isinstance(raw, str) and class_names and raw in class_names:
        return list(class_names).index(raw)
    try:
        value = int(raw)
        if isinstance(raw, float) and raw != value:
            raise ValueError
    except (TypeError, ValueError):
        raise DataError(
            f"label {raw!r} is neither a class index nor one of the class names",
            path=record.path,
            row=record.row,
        ) from None
    if value < 0 or (class_names and value >= len(class_names)):
        raise DataError(
            f"label {value} is outside the {len(class_names or [])} classes",
            path=record.path,
            row=record.row,
        )
    return value
