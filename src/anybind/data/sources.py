"""Readers that turn a manifest, a folder or an .npz file into raw records.

Row numbers in messages count data records from 1 (the header of a CSV is not a row).
Relative paths in a manifest are resolved against `root` (default: the manifest's folder).
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from anybind.data.sample import RawRecord
from anybind.errors import DataError
from anybind.modalities import Modality


def manifest_records(
    path: str | Path,
    modalities: dict[str, Modality],
    columns: dict[str, str] | None = None,
    label_column: str | None = "label",
    root: str | Path | None = None,
) -> list[RawRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError("manifest not found", path=str(path))
    rows = _read_rows(path)
    columns = columns or {m: m for m in modalities}
    base = Path(root) if root else path.parent
    if rows:
        present = set().union(*(r.keys() for r in rows[:100]))
        if not present & set(columns.values()):
            raise DataError(
                f"none of the modality columns {sorted(columns.values())} is in the "
                f"manifest (columns: {sorted(present)})",
                path=str(path),
            )
    records = []
    for i, row in enumerate(rows, start=1):
        values: dict[str, Any] = {}
        for modality, column in columns.items():
            value = row.get(column)
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            # an inline list stays a list: the modality checks it when the sample is decoded,
            # so a ragged one is named by its row and goes through --skip-bad
            if isinstance(value, str) and modalities[modality].is_path(value):
                value = str(base / value) if not Path(value).is_absolute() else value
            values[modality] = value
        label = row.get(label_column) if label_column else None
        records.append(
            RawRecord(values=values, label=label, id=str(row.get("id", i)), path=str(path), row=i)
        )
    return records


def _read_rows(path: Path) -> list[dict[str, Any]]:
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        with path.open("rb") as f:
            for i, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise DataError(
                        f"not UTF-8 text (byte {exc.start + 1} of the line)", path=str(path), row=i
                    ) from None
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DataError(f"not valid JSON: {exc.msg}", path=str(path), row=i) from None
                if not isinstance(row, dict):
                    raise DataError("a JSONL row must be an object", path=str(path), row=i)
                rows.append(row)
        return rows
    try:
        if suffix == ".csv":
            import pyarrow.csv as pacsv

            # an empty cell is an absent value (None), not the empty string
            convert = pacsv.ConvertOptions(strings_can_be_null=True, check_utf8=True)
            read = pacsv.ReadOptions(encoding="utf8")
            table = pacsv.read_csv(path, read_options=read, convert_options=convert)
            rows = table.to_pylist()
            if any(isinstance(v, bytes) for row in rows for v in row.values()):
                raise ValueError("not UTF-8 text")
            return rows
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            return pq.read_table(path).to_pylist()
    except Exception as exc:  # pyarrow raises several error types for malformed files
        raise DataError(f"cannot read manifest: {exc}", path=str(path)) from exc
    raise DataError("a manifest must be .jsonl, .csv or .parquet", path=str(path))


def folder_records(
    path: str | Path, modality: str, pattern: str, glob: str = "*", suffixes: tuple[str, ...] = ()
) -> list[RawRecord]:
    """Every file under `path` matching `glob` (and the modality's suffixes); the label is the
    regex group `label` of `pattern` searched in the file name."""
    root = Path(path)
    if not root.is_dir():
        raise DataError("folder not found", path=str(root))
    regex = re.compile(pattern)
    if "label" not in regex.groupindex:
        raise DataError(f"the pattern {pattern!r} needs a named group (?P<label>...)")
    files = sorted(
        p
        for p in root.rglob(glob)
        if p.is_file() and (not suffixes or p.suffix.lower() in suffixes)
    )
    if not files:
        raise DataError(f"no files matching {glob!r} in the folder", path=str(root))
    records = []
    for f in files:
        match = regex.search(f.name)
        label = match.group("label") if match else None
        records.append(
            RawRecord(
                values={modality: str(f)}, label=label, id=str(f.relative_to(root)), path=str(f)
            )
        )
    return records


def array_records(
    path: str | Path, keys: dict[str, str], label_key: str | None = "labels"
) -> list[RawRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError("array file not found", path=str(path))
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in keys.values() if k not in npz.files]
            if missing:
                raise DataError(
                    f"arrays {missing} not in the file (it holds {npz.files})", path=str(path)
                )
            arrays = {m: npz[k] for m, k in keys.items()}
            labels = npz[label_key] if label_key and label_key in npz.files else None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # an empty or truncated file raises EOFError, which the CLI would take for Ctrl-D
        raise DataError(
            f"cannot read arrays: {exc or type(exc).__name__}", path=str(path)
        ) from None
    for name, array in {**arrays, **({"labels": labels} if labels is not None else {})}.items():
        if array.ndim == 0:
            raise DataError(f"'{name}' is a single value, not one per sample", path=str(path))
    if labels is not None and labels.ndim != 1:
        raise DataError(
            f"labels must hold one value per sample, not shape {labels.shape}", path=str(path)
        )
    sizes = {m: len(a) for m, a in arrays.items()} | (
        {"labels": len(labels)} if labels is not None else {}
    )
    if len(set(sizes.values())) != 1:
        raise DataError(f"arrays disagree on the number of samples: {sizes}", path=str(path))
    n = next(iter(sizes.values()))
    return list(_array_rows(arrays, labels, n, str(path)))


def _array_rows(
    arrays: dict[str, np.ndarray], labels: np.ndarray | None, n: int, path: str
) -> Iterator[RawRecord]:
    for i in range(n):
        values = {m: (str(a[i]) if a.dtype.kind in "US" else a[i]) for m, a in arrays.items()}
        # resolved per row like a manifest's: class index, class name, NaN for none
        label = labels[i].item() if labels is not None else None
        yield RawRecord(values=values, label=label, id=str(i), path=path, row=i + 1)
