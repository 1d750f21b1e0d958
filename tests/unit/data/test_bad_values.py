"""Bad values inside otherwise readable files are named by file and row, never a traceback and
never a silently wrong sample: ragged or complex arrays, impossible sample rates, waveforms whose
power overflows, .npz labels that are strings, 2-D or NaN, single-value arrays, an empty .npz,
and JSON true/false as a label."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anybind.data.record import load_record
from anybind.data.sources import array_records, manifest_records
from anybind.errors import DataError
from anybind.modalities import build_modality

MODALITIES = {
    "image": build_modality("image", {"size": (2, 2), "channels": 1}),
    "audio": build_modality("audio", {}),
}


def records_of(tmp_path, rows: list[dict]):
    path = tmp_path / "m.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, manifest_records(path, MODALITIES)


WAVE = [0.0, 0.1] * 400
ROWS = [
    ({"image": [[0.1, 0.2], [0.3]], "label": 0}, "rectangular array of numbers"),
    ({"image": [["a", "b"], ["c", "d"]], "label": 0}, "real numbers, not dtype <U1"),
    ({"audio": {"waveform": WAVE, "sample_rate": 0}, "label": 0}, "above 0, not 0"),
    ({"audio": {"waveform": WAVE, "sample_rate": -5}, "label": 0}, "above 0, not -5"),
    ({"audio": {"waveform": WAVE, "sample_rate": "fast"}, "label": 0}, "not 'fast'"),
    ({"audio": {"waveform": WAVE, "sample_rate": 8000.5}, "label": 0}, "not 8000.5"),
    ({"audio": {"waveform": WAVE}, "label": 0}, "lacks ['sample_rate']"),
    ({"audio": [1e30] * 800, "label": 0}, "waveform values reach 1e+30"),
    ({"image": [[0.1, 0.2], [0.3, 0.4]], "label": True}, "label true is neither"),
]


@pytest.mark.parametrize(("row", "message"), ROWS, ids=[m for _, m in ROWS])
def test_a_bad_inline_value_is_named_by_file_and_row(tmp_path, row, message) -> None:
    good = {"image": [[0.1, 0.2], [0.3, 0.4]], "label": 1}
    path, records = records_of(tmp_path, [good, row])
    load_record(records[0], MODALITIES, None)  # the good row loads
    with pytest.raises(DataError) as err:
        load_record(records[1], MODALITIES, None)
    assert err.value.row == 2 and str(path) in str(err.value) and message in str(err.value)


def test_a_complex_image_array_is_refused_not_cast(tmp_path) -> None:
    with pytest.raises(DataError, match="not complex numbers"):
        MODALITIES["image"].load(np.ones((2, 2), dtype=complex), source="x")


def npz(tmp_path, **arrays):
    path = tmp_path / "a.npz"
    np.savez(path, **arrays)
    return path


IMAGES = np.zeros((3, 2, 2), np.float32)


def test_npz_labels_resolve_like_a_manifest_s(tmp_path) -> None:
    names = ["zero", "one"]
    path = npz(tmp_path, images=IMAGES, labels=np.array([0.0, np.nan, 1.0]))
    labels = [
        load_record(r, MODALITIES, names).label for r in array_records(path, {"image": "images"})
    ]
    assert labels == [0, -1, 1]  # NaN: unlabelled
    path = npz(tmp_path, images=IMAGES, labels=np.array(["one", "zero", "three"]))
    records = array_records(path, {"image": "images"})
    assert load_record(records[0], MODALITIES, names).label == 1
    with pytest.raises(DataError, match=r"row 3\).*'three' is neither"):
        load_record(records[2], MODALITIES, names)


@pytest.mark.parametrize(
    ("arrays", "message"),
    [
        ({"images": IMAGES, "labels": np.zeros((3, 2))}, "one value per sample, not shape (3, 2)"),
        ({"images": np.array(3.0)}, "'image' is a single value"),
        ({"images": IMAGES, "labels": np.array(1)}, "'labels' is a single value"),
    ],
)
def test_npz_arrays_of_the_wrong_shape_are_named(tmp_path, arrays, message) -> None:
    with pytest.raises(DataError, match="a.npz") as err:
        array_records(npz(tmp_path, **arrays), {"image": "images"})
    assert message in str(err.value)


def test_an_empty_npz_is_named_not_an_abort(tmp_path) -> None:
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    with pytest.raises(DataError, match="empty.npz.*cannot read arrays"):
        array_records(path, {"image": "images"})
