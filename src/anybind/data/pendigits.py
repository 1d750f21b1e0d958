"""Reader of the UCI Pen-Based Recognition of Handwritten Digits files (Alpaydin & Alimoglu 1996).

Each row is one digit written on a tablet: `x1,y1,…,x8,y8,digit` — eight pen positions spaced
equally along the trajectory's arc length (pen-up moves included), in writing order, translated
and scaled so that the coordinate with the larger range spans 0–100, y growing upwards — then
the digit 0–9. The CSV in ../shared/data has a header line; the original `.tra`/`.tes` files do
not; both are read. Each row becomes a (2, 8) series: x positions, then y positions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from anybind.data.sample import RawRecord
from anybind.errors import DataError

POINTS = 8


def pendigits_records(path: str | Path, modality: str = "timeseries") -> list[RawRecord]:
    path = Path(path)
    if not path.is_file():
        raise DataError("pendigits file not found", path=str(path))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise DataError(f"not UTF-8 text (byte {exc.start + 1})", path=str(path)) from None
    records = []
    row = 0
    for line in lines:
        if not line.strip():
            continue
        cells = [c.strip() for c in line.split(",")]
        if row == 0 and not records and cells[0].lower().startswith("x"):
            continue  # the header
        row += 1
        values = _parse(cells, path, row)
        series = values[:-1].reshape(POINTS, 2).T  # (2, 8): x row, y row
        records.append(
            RawRecord(
                values={modality: series},
                label=int(values[-1]),
                id=f"pendigits-{row}",
                path=str(path),
                row=row,
            )
        )
    if not records:
        raise DataError("the file holds no digits", path=str(path))
    return records


def _parse(cells: list[str], path: Path, row: int) -> np.ndarray:
    if len(cells) != 2 * POINTS + 1:
        raise DataError(
            f"expected {2 * POINTS + 1} values (x1,y1,…,x8,y8,digit), got {len(cells)}",
            path=str(path),
            row=row,
        )
    try:
        values = np.array([float(c) for c in cells], dtype=np.float32)
    except ValueError:
        raise DataError("a value is not a number", path=str(path), row=row) from None
    if not np.all(np.isfinite(values)) or values[:-1].min() < 0 or values[:-1].max() > 100:
        raise DataError("pen positions must lie in 0–100", path=str(path), row=row)
    if values[-1] not in range(10):
        raise DataError(f"the digit must be 0–9, got {cells[-1]}", path=str(path), row=row)
    return values
