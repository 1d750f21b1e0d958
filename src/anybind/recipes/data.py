"""Build datasets from the configured sources (lazy or decoded into memory), with captions for
labelled samples."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from anybind.config.schema import (
    ArraysSource,
    Config,
    DigitsSource,
    FolderSource,
    ManifestSource,
    Source,
)
from anybind.data.dataset import LoadReport, resolve_label
from anybind.data.lazy import RecordDataset
from anybind.data.loader import AnyDataset, materialize
from anybind.data.sample import RawRecord
from anybind.data.sources import array_records, folder_records, manifest_records
from anybind.errors import DataError
from anybind.feature_cache import default_cache_root
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


def source_dataset(
    sources: list[Source], config: Config, modalities: dict[str, Modality], *, progress: bool = True
) -> RecordDataset:
    """The lazy dataset of the sources: their records, with captions; nothing decoded yet."""
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
    feature_cache = feature_cache_root(config)
    for modality in modalities.values():
        modality.use_feature_cache(feature_cache)
    return RecordDataset(records, modalities, class_names)


def feature_cache_root(config: Config) -> str | None:
    root = config.data.feature_cache
    if root == "":
        return None
    return str(Path(root).expanduser()) if root else str(default_cache_root() / "features")


def cache_policy(sources: list[Source], config: Config) -> str:
    """`data.cache` with "auto" resolved: memory when every source already holds its data in
    RAM (digits, .npz arrays), none (decode when drawn) when samples are files on disk."""
    if config.data.cache != "auto":
        return config.data.cache
    in_ram = all(isinstance(s, DigitsSource | ArraysSource) for s in sources)
    return "memory" if in_ram else "none"


def build_dataset(
    sources: list[Source],
    config: Config,
    modalities: dict[str, Modality],
    *,
    skip_bad: bool = False,
    progress: bool = True,
    description: str = "loading",
    cache: str | None = None,
) -> tuple[AnyDataset, LoadReport]:
    """The dataset of the sources, decoded into memory or left lazy (`cache`, default the
    config's `data.cache`). In memory, every bad sample is found now (named, or skipped and
    counted with `skip_bad`); lazy, when it is drawn."""
    lazy = source_dataset(sources, config, modalities, progress=progress)
    if (cache or cache_policy(sources, config)) == "memory":
        return materialize(
            lazy,
            skip_bad=skip_bad,
            workers=config.data.workers,
            progress=progress,
            description=description,
        )
    if len(lazy) == 0:
        raise DataError("the data sources hold no samples")
    return lazy, LoadReport(loaded=len(lazy))
