"""Build datasets from the configured sources (lazy or decoded into memory), with captions for
labelled samples."""

from __future__ import annotations

from pathlib import Path

from anybind.config.schema import (
    ArraysSource,
    AVDigitsSource,
    Config,
    DigitsSource,
    FolderSource,
    ManifestSource,
    PenDigitsSource,
    ShardsSource,
    Source,
)
from anybind.data.captions import add_captions
from anybind.data.dataset import LoadReport
from anybind.data.ids import combine_sources
from anybind.data.lazy import RecordDataset
from anybind.data.loader import AnyDataset, materialize
from anybind.data.sample import RawRecord
from anybind.data.shards.index import default_index_path, expand_urls, read_index
from anybind.data.shards.stream import ShardSet, materialize_stream
from anybind.data.sources import array_records, folder_records, manifest_records
from anybind.errors import DataError
from anybind.feature_cache import default_cache_root
from anybind.modalities import Modality

#: what training and evaluation read: a map-style dataset (in memory or lazy) or streamed shards
Data = AnyDataset | ShardSet


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
    if isinstance(source, AVDigitsSource):
        from anybind.data.av_digits import av_digits_records

        return av_digits_records(source.path, source.seed)
    if isinstance(source, PenDigitsSource):
        from anybind.data.pendigits import pendigits_records

        return pendigits_records(source.path, source.modality)
    raise TypeError(f"unknown source {source!r}")


def source_name(source: Source) -> str:
    """How a source is named in sample ids and messages: its path, or its type and split."""
    path = getattr(source, "path", None)
    if path is not None:
        return str(path)
    return f"{source.type}:{getattr(source, 'split', '')}".rstrip(":")


def source_dataset(
    sources: list[Source], config: Config, modalities: dict[str, Modality], *, progress: bool = True
) -> RecordDataset:
    """The lazy dataset of the sources: their records, with captions; nothing decoded yet."""
    records = combine_sources(
        [(source_name(s), source_records(s, modalities, progress=progress)) for s in sources]
    )
    class_names = config.data.class_names
    if "text" in modalities:
        captions = dict(config.data.captions)
        if any(isinstance(s, DigitsSource) for s in sources) and not captions:
            from anybind.data.digits.benchmark import DIGITS_CAPTIONS

            captions = DIGITS_CAPTIONS
        add_captions(records, captions, class_names)
    use_feature_cache(modalities, config)
    return RecordDataset(records, modalities, class_names)


def use_feature_cache(modalities: dict[str, Modality], config: Config) -> None:
    root = feature_cache_root(config)
    for modality in modalities.values():
        modality.use_feature_cache(root)


def feature_cache_root(config: Config) -> str | None:
    root = config.data.feature_cache
    if root == "":
        return None
    return str(Path(root).expanduser()) if root else str(default_cache_root() / "features")


def shard_set(sources: list[Source], config: Config, modalities: dict[str, Modality]) -> ShardSet:
    """The shards of `shards` sources (their URLs and index), to be streamed."""
    urls: list[str] = []
    samples = 0
    per_epoch = 0
    class_names = config.data.class_names
    for source in sources:
        assert isinstance(source, ShardsSource)
        found = expand_urls(source.path)
        where = source.index or default_index_path(source.path)
        if where is None:
            raise DataError("remote shards need their index.json: set the source's `index`")
        index = read_index(where)
        count = index.samples_in(found)
        if class_names and index.class_names and list(index.class_names) != list(class_names):
            raise DataError(
                f"the shards' class names {index.class_names} differ from data.class_names",
                path=str(where),
            )
        class_names = class_names or index.class_names
        urls += found
        samples += count
        per_epoch += source.samples_per_epoch or count
    use_feature_cache(modalities, config)
    return ShardSet(
        urls,
        modalities,
        class_names,
        captions=dict(config.data.captions),
        samples=samples,
        samples_per_epoch=per_epoch,
        shuffle_buffer=min(s.shuffle_buffer for s in sources),  # type: ignore[union-attr]
    )


def cache_policy(sources: list[Source], config: Config) -> str:
    """`data.cache` with "auto" resolved: memory when every source already holds its data in
    RAM (digits, .npz arrays), none (decode when drawn) when samples are files on disk."""
    if config.data.cache != "auto":
        return config.data.cache
    in_ram = all(
        isinstance(s, DigitsSource | ArraysSource | PenDigitsSource | AVDigitsSource)
        for s in sources
    )
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
) -> tuple[Data, LoadReport]:
    """The dataset of the sources, decoded into memory or left lazy (`cache`, default the
    config's `data.cache`). In memory, every bad sample is found now (named, or skipped and
    counted with `skip_bad`); lazy, when it is drawn. Shards stay streamed unless `cache` is
    "memory"."""
    if any(isinstance(s, ShardsSource) for s in sources):
        shards = shard_set(sources, config, modalities)
        if cache != "memory":
            return shards, LoadReport(loaded=shards.samples)
        return materialize_stream(
            shards, skip_bad=skip_bad, workers=config.data.workers, progress=progress
        )
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
