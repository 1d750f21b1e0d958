"""Captions for labelled samples without text, from per-modality templates."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from anybind.data.record import resolve_label
from anybind.data.sample import RawRecord
from anybind.errors import DataError


def add_captions(
    records: list[RawRecord], captions: dict[str, list[str]], class_names: Sequence[str] | None
) -> None:
    """Give each labelled sample without text a caption from its modality's templates; the
    template is chosen by a hash of the sample id, so it is the same on every run."""
    if not captions or not class_names:
        return
    for r in records:
        if r.values.get("text") is not None or r.label is None:
            continue
        kind = next((m for m in r.values if m in captions), None)
        if kind is None:
            continue
        try:
            label = resolve_label(r.label, class_names, r)
        except DataError:
            continue  # loading the record reports the bad label with its file and row
        if label < 0:
            continue
        templates = captions[kind]
        pick = int(hashlib.md5(r.id.encode()).hexdigest(), 16) % len(templates)
        r.values["text"] = templates[pick].format(class_names[label])
