"""Sample ids are unique in a data set: adapters record which samples they saw by id, embedding
tables and search results name samples by id. Within one source a repeated id is a data error
naming both rows; across sources (whose default ids — row numbers, relative paths — collide
naturally) each source's ids are qualified with the source, `SOURCE#ID` (`SOURCE[k]#ID` for the
k-th of several sources reading one file), when any collide."""

from __future__ import annotations

from collections.abc import Sequence

from anybind.data.sample import RawRecord
from anybind.errors import DataError


def require_unique(records: Sequence[RawRecord], source: str) -> None:
    """A DataError naming the first id used twice in one source, with both rows."""
    first: dict[str, RawRecord] = {}
    for record in records:
        seen = first.setdefault(record.id, record)
        if seen is not record:
            where = f"row {seen.row}" if seen.row is not None else seen.path
            raise DataError(
                f"sample id '{record.id}' is used twice (first at {where}); ids must be unique",
                path=record.path or source,
                row=record.row,
            )


def combine_sources(groups: Sequence[tuple[str, list[RawRecord]]]) -> list[RawRecord]:
    """The records of every source, in order, with unique ids (see the module docstring);
    `groups` pairs each source's name (its path) with its records."""
    for name, records in groups:
        require_unique(records, name)
    owners: dict[str, int] = {}
    collide = any(
        owners.setdefault(record.id, k) != k
        for k, (_, records) in enumerate(groups)
        for record in records
    )
    names = [name for name, _ in groups]
    # one file read twice (say, with other keys) is two sources: their position tells them apart
    names = [f"{n}[{k}]" if names.count(n) > 1 else n for k, n in enumerate(names)]
    combined: list[RawRecord] = []
    for name, (_, records) in zip(names, groups, strict=True):
        for record in records:
            if collide:
                record.id = f"{name}#{record.id}"
            combined.append(record)
    return combined
