"""Decode one raw record into a sample: each present modality's value, and its label."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from anybind.data.sample import UNLABELLED, RawRecord, Sample
from anybind.errors import DataError
from anybind.modalities import Modality


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
