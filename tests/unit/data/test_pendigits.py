"""The UCI pendigits reader: rows become (2, 8) series, x then y; bad rows are named."""

from __future__ import annotations

import numpy as np
import pytest

from anybind.data.pendigits import pendigits_records
from anybind.errors import DataError

HEADER = ",".join(f"{a}{i}" for i in range(1, 9) for a in "xy") + ",digit"
ROW = "47,100,27,81,57,37,26,0,0,23,56,53,100,90,40,98,8"


def test_rows_become_series_of_x_then_y(tmp_path):
    (tmp_path / "p.csv").write_text(
        f"{HEADER}\n{ROW}\n0,89,27,100,42,75,29,45,15,15,37,0,69,2,100,6,2\n"
    )
    records = pendigits_records(tmp_path / "p.csv")
    assert [r.label for r in records] == [8, 2]
    series = records[0].values["timeseries"]
    assert series.shape == (2, 8)
    np.testing.assert_array_equal(series[0], [47, 27, 57, 26, 0, 56, 100, 40])
    np.testing.assert_array_equal(series[1], [100, 81, 37, 0, 23, 53, 90, 98])
    assert records[1].row == 2 and records[1].id == "pendigits-2"


def test_the_original_headerless_files_are_read(tmp_path):
    (tmp_path / "pendigits.tra").write_text(f"{ROW}\n{ROW}\n")
    assert len(pendigits_records(tmp_path / "pendigits.tra", modality="pen")) == 2


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("1,2,3", "expected 17 values"),
        (ROW.replace("47", "a"), "not a number"),
        (ROW.replace("47", "101"), "0–100"),
        (ROW[:-1] + "12", "0–9"),
    ],
)
def test_a_bad_row_is_named(tmp_path, row, message):
    (tmp_path / "p.csv").write_text(f"{HEADER}\n{ROW}\n{row}\n")
    with pytest.raises(DataError, match=message) as info:
        pendigits_records(tmp_path / "p.csv")
    assert "p.csv" in str(info.value) and "row 2" in str(info.value)
