"""A sample: any subset of the configured modalities, an optional label, an id."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

UNLABELLED = -1


@dataclass(slots=True)
class RawRecord:
    """What a source yields before loading: raw values (paths, arrays, strings) per modality."""

    values: dict[str, Any]
    label: Any = None
    id: str = ""
    source: str = ""  # where it came from, for error messages: "file.jsonl row 12"
    path: str | None = None  # the file the record's data lives in, if one
    row: int | None = None


@dataclass(slots=True)
class Sample:
    """A loaded sample: tensors (or str for text) per present modality."""

    values: dict[str, Any]
    label: int = UNLABELLED
    id: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
