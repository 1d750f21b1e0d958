"""The timeseries modality: shapes, padding and mask, files equal arrays, bad input named."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anybind.errors import DataError
from anybind.modalities import EncodedFile, build_modality


def modality(**options):
    return build_modality("timeseries", {"channels": 2, "length": 8, **options})


def test_a_short_series_is_scaled_padded_and_masked():
    series = np.arange(10, dtype=np.float32).reshape(2, 5)
    out = modality(scale=10.0).load(series)
    assert out.shape == (3, 8)
    np.testing.assert_array_equal(out[:2, :5].numpy(), series / 10.0)
    assert out[:2, 5:].abs().sum() == 0
    np.testing.assert_array_equal(out[2].numpy(), [1, 1, 1, 1, 1, 0, 0, 0])


def test_one_channel_accepts_a_flat_list():
    out = build_modality("timeseries", {"channels": 1, "length": 4}).load([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(out.numpy(), [[1, 2, 3, 0], [1, 1, 1, 0]])


def test_npy_and_csv_files_and_shard_members_equal_the_array(tmp_path):
    series = np.random.default_rng(0).normal(size=(2, 6)).astype(np.float32)
    np.save(tmp_path / "s.npy", series)
    csv = "\n".join(",".join(f"{v:.9g}" for v in row) for row in series.T)  # one row per step
    (tmp_path / "s.csv").write_text(csv + "\n")
    m = modality()
    expected = m.load(series)
    assert torch.equal(m.load(str(tmp_path / "s.npy")), expected)
    torch.testing.assert_close(m.load(str(tmp_path / "s.csv")), expected)
    member = EncodedFile((tmp_path / "s.csv").read_bytes(), "x.csv")
    torch.testing.assert_close(m.load(member), expected)


def test_a_too_long_series_is_refused_unless_truncated():
    long = np.ones((2, 12), dtype=np.float32)
    with pytest.raises(DataError, match="12 steps, more than length 8"):
        modality().load(long, source="row 3")
    out = modality(truncate=True).load(long)
    assert out.shape == (3, 8) and out[2].sum() == 8


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (np.ones((3, 4)), r"expected a series shaped \(2, length\)"),
        (np.array([[1.0, np.nan], [0.0, 1.0]]), "NaN"),
        ([[1.0, 2.0], [3.0]], "ragged"),
        ({"x": 1}, "a file path or an array"),
        ("missing.csv", "not found"),
    ],
)
def test_bad_input_names_its_source(raw, message):
    with pytest.raises(DataError, match=message) as info:
        modality().load(raw, source="rows.jsonl row 7")
    assert "row 7" in str(info.value) or "missing.csv" in str(info.value)


def test_a_corrupt_csv_is_named(tmp_path):
    (tmp_path / "bad.csv").write_text("1,2\nthree,4\n")
    with pytest.raises(DataError, match="cannot read the time series") as info:
        modality().load(str(tmp_path / "bad.csv"))
    assert "bad.csv" in str(info.value)


def test_augment_keeps_padding_zero_and_the_mask():
    m = modality(gain=0.2, jitter=0.1, shift=0.05)
    batch = torch.stack([m.load(np.ones((2, 5))), m.load(np.full((2, 8), 2.0))])
    torch.manual_seed(0)
    out = m.augment(batch)
    assert torch.equal(out[:, 2], batch[:, 2])
    assert out[0, :2, 5:].abs().sum() == 0
    assert not torch.equal(out[:, :2], batch[:, :2])
    ratio = out[1, :2].mean(dim=1) / 2.0  # gain 1 ± 0.2, shift ± 0.05/2, jitter of spread 0
    assert torch.all((ratio > 0.75) & (ratio < 1.25))
