"""Build in-memory datasets from the configured sources, with captions for labelled samples."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from anybind.config.schema import (
    ArraysSource,
    Config,
    DigitsSource,
    FolderSource,
    ManifestSource,
    Source,
)
from anybind.data.dataset import LoadReport, MultiModalDataset, resolve_label
from anybind.data.sample import RawRecord
from anybind.data.sources import array_records, folder_records, manifest_records
from anybind.errors import DataError
from anybind.modalities import Modality


def source_records(
    source: Source, modalities: dict[str, Modality], *, progress: bool = True
) -> list[RawRecord]:
    if isinstance(source, DigitsSource):
        from anybind.data.digits.benchmark import digits_records

        return digits_records(source, progress=progress)
    if isinstance(source, ManifestSource):
        return manifest_records(
            source.path, modalities, source.columns or None, source.label_column, source.root
        )
    if isinstance(source, FolderSource):
        return folder_records(
            source.path,
            source.modality,
            source.pattern,
            source.glob,
            modalities[source.modality].file_suffixes,
        )
    if isinstance(source, ArraysSource):
        records = array_records(source.path, source.keys, source.label_key)
        if source.preprocess == "mnist_to_uci":
            import numpy as np

            from anybind.data.digits.images import mnist_to_uci

            for r in records:
                for m, value in r.values.items():
                    r.values[m] = mnist_to_uci(np.asarray(value)[None])[0]
        return records
    raise TypeError(f"unknown source {source!r}")


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


def build_dataset(
    sources: list[Source],
    config: Config,
    modalities: dict[str, Modality],
    *,
    skip_bad: bool = False,
    progress: bool = True,
    description: str = "loading",
) -> tuple[MultiModalDataset, LoadReport]:
    records: list[RawRecord] = []
    for source in sources:
        records += source_records(source, modalities, progress=progress)
    class_names = config.data.class_names
    if "text" in modalities:
        captions = dict(config.data.captions)
        if any(isinstance(s, DigitsSource) for s in sources) and not captions:
            from anybind.data.digits.benchmark import DIGITS_CAPTIONS

            captions = DIGITS_CAPTIONS
        add_captions(records, captions, class_names)
    return MultiModalDataset.from_records(
        records,
        modalities,
        class_names=class_names,
        skip_bad=skip_bad,
        description=description,
        progress=progress,
        total=len(records),
    )
