"""`anybind shard SOURCES… --out DIR`: write any sources into WebDataset tar shards."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from anybind.config.schema import Source
from anybind.data.sample import RawRecord
from anybind.data.shards.index import ShardIndex
from anybind.data.shards.write import write_shards
from anybind.modalities import Modality, build_modality
from anybind.recipes.data import source_records

DEFAULT_MODALITIES = ("image", "audio", "text")


def default_modalities() -> dict[str, Modality]:
    return {name: build_modality(name) for name in DEFAULT_MODALITIES}


def class_names_of(records: Sequence[RawRecord]) -> list[str] | None:
    """The distinct string labels, sorted (None when every label is a number or absent)."""
    names = sorted({r.label for r in records if isinstance(r.label, str) and r.label.strip()})
    return [n for n in names if not n.lstrip("-").isdigit()] or None


def shard_sources(
    sources: list[Source],
    out: str | Path,
    *,
    modalities: dict[str, Modality] | None = None,
    class_names: Sequence[str] | None = None,
    samples_per_shard: int = 1000,
    check: bool = True,
    skip_bad: bool = False,
    progress: bool = True,
) -> tuple[ShardIndex, int]:
    modalities = modalities or default_modalities()
    records: list[RawRecord] = []
    for source in sources:
        records += source_records(source, modalities, progress=progress)
    names = list(class_names) if class_names else class_names_of(records)
    return write_shards(
        records,
        modalities,
        out,
        samples_per_shard=samples_per_shard,
        class_names=names,
        check=check,
        skip_bad=skip_bad,
        progress=progress,
        total=len(records),
    )
