"""Sources (manifests, folders, .npz), the in-memory dataset and collation.

The same five rows are written as JSONL, CSV and Parquet, with image paths relative to the
manifest, inline text and labels, some rows lacking a modality or a label; every format must
load to the same samples, equal to the files' pixel values and the inline strings.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile
import torch
from PIL import Image

from anybind.data.collate import collate
from anybind.data.dataset import MultiModalDataset
from anybind.data.lazy import RecordDataset
from anybind.data.loader import materialize
from anybind.data.record import load_record
from anybind.data.sample import UNLABELLED, RawRecord, Sample
from anybind.data.sources import array_records, folder_records, manifest_records
from anybind.errors import DataError
from anybind.modalities import Modality, build_modality


def _modalities() -> dict[str, Modality]:
    return {"image": build_modality("image", {"size": (8, 8)}), "text": build_modality("text")}


def _load(
    records: list[RawRecord], modalities: dict[str, Modality] | None = None, **kwargs: Any
) -> MultiModalDataset:
    modalities = modalities or _modalities()
    class_names = kwargs.pop("class_names", None)
    lazy = RecordDataset(records, modalities, class_names)
    dataset, report = materialize(lazy, progress=False, **kwargs)
    return dataset


def _write_images(root: Path) -> dict[str, np.ndarray]:
    """Image files under root/imgs; returns the expected (8, 8) float arrays by relative path."""
    rng = np.random.default_rng(0)
    (root / "imgs").mkdir(parents=True)
    expected = {}
    for name in ("a.npy", "c.npy"):
        array = rng.uniform(0, 1, (8, 8)).astype(np.float32)
        np.save(root / "imgs" / name, array)
        expected[f"imgs/{name}"] = array
    for name in ("b.png", "d.png"):
        pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
        Image.fromarray(pixels).save(root / "imgs" / name)
        expected[f"imgs/{name}"] = pixels.astype(np.float32) / 255.0
    return expected


ROWS: list[dict[str, Any]] = [
    {"image": "imgs/a.npy", "text": "a seven", "label": 7},
    {"image": "imgs/b.png", "text": None, "label": 3},
    {"image": None, "text": "only words here", "label": None},
    {"image": "imgs/c.npy", "text": "  padded four  ", "label": 4},
    {"image": "imgs/d.png", "text": "unlabelled", "label": None},
]


def _write_manifest(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = ["image", "text", "label"]
    if path.suffix == ".jsonl":
        with path.open("w", encoding="utf-8") as f:
            for row in rows:
                f.write(json.dumps({k: v for k, v in row.items() if v is not None}) + "\n")
    elif path.suffix == ".csv":
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for row in rows:
                writer.writerow(["" if row.get(c) is None else row[c] for c in columns])
    else:
        table = pa.table(
            {
                c: pa.array(
                    [r.get(c) for r in rows], type=pa.int64() if c == "label" else pa.string()
                )
                for c in columns
            }
        )
        pq.write_table(table, path)
    return path


@pytest.fixture
def data_root(tmp_path: Path) -> tuple[Path, dict[str, np.ndarray]]:
    return tmp_path, _write_images(tmp_path)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_each_manifest_format_loads_the_expected_samples(
    data_root: tuple[Path, dict[str, np.ndarray]], suffix: str
) -> None:
    root, expected = data_root
    manifest = _write_manifest(root / f"manifest{suffix}", ROWS)
    records = manifest_records(manifest, _modalities())
    assert [r.row for r in records] == [1, 2, 3, 4, 5]
    assert all(r.path == str(manifest) for r in records)
    dataset = _load(records)
    assert len(dataset) == 5
    assert dataset.labels().tolist() == [7, 3, UNLABELLED, 4, UNLABELLED]
    assert dataset.has("image").tolist() == [True, True, False, True, True]
    assert dataset.has("text").tolist() == [True, False, True, True, True]
    for sample, row in zip(dataset.samples, ROWS, strict=True):
        if row["image"] is not None:
            np.testing.assert_array_equal(sample.values["image"][0].numpy(), expected[row["image"]])
        if row["text"] is not None:
            assert sample.values["text"] == row["text"].strip()


def test_jsonl_csv_and_parquet_give_identical_samples(
    data_root: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, _ = data_root
    loaded = [
        _load(manifest_records(_write_manifest(root / f"m{s}", ROWS), _modalities()))
        for s in (".jsonl", ".csv", ".parquet")
    ]
    first = loaded[0]
    for other in loaded[1:]:
        assert len(other) == len(first)
        for x, y in zip(first.samples, other.samples, strict=True):
            assert (x.id, x.label) == (y.id, y.label)
            assert sorted(x.values) == sorted(y.values)
            if "image" in x.values:
                torch.testing.assert_close(x.values["image"], y.values["image"], rtol=0, atol=0)
            if "text" in x.values:
                assert x.values["text"] == y.values["text"]


def test_manifest_root_and_custom_columns(data_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, expected = data_root
    sub = root / "lists"
    sub.mkdir()
    manifest = sub / "m.jsonl"
    manifest.write_text(json.dumps({"picture": "imgs/a.npy", "y": 2, "id": "first"}) + "\n")
    records = manifest_records(
        manifest, _modalities(), columns={"image": "picture"}, label_column="y", root=root
    )
    sample = _load(records)[0]
    assert sample.id == "first" and sample.label == 2
    np.testing.assert_array_equal(sample.values["image"][0].numpy(), expected["imgs/a.npy"])


def test_inline_array_column_becomes_an_image(tmp_path: Path) -> None:
    array = np.random.default_rng(1).uniform(0, 1, (8, 8))
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": array.tolist(), "label": 1}) + "\n")
    sample = _load(manifest_records(manifest, _modalities()))[0]
    np.testing.assert_allclose(sample.values["image"][0].numpy(), array, rtol=0, atol=1e-7)


def test_missing_image_file_names_the_file_and_the_row(
    data_root: tuple[Path, dict[str, np.ndarray]],
) -> None:
    root, _ = data_root
    rows = [dict(r) for r in ROWS]
    rows[3]["image"] = "imgs/gone.npy"
    manifest = _write_manifest(root / "m.jsonl", rows)
    with pytest.raises(DataError, match="not found") as exc:
        _load(manifest_records(manifest, _modalities()))
    message = str(exc.value)
    assert exc.value.row == 4
    assert "row 4" in message
    assert "gone.npy" in message and str(root / "imgs" / "gone.npy") in message
    assert str(manifest) in message


def test_skip_bad_skips_and_counts(data_root: tuple[Path, dict[str, np.ndarray]]) -> None:
    root, _ = data_root
    rows = [dict(r) for r in ROWS]
    rows[0]["image"] = "imgs/gone.npy"
    rows[1]["image"] = "imgs/also_gone.png"
    manifest = _write_manifest(root / "m.csv", rows)
    lazy = RecordDataset(manifest_records(manifest, _modalities()), _modalities())
    dataset, report = materialize(lazy, skip_bad=True, progress=False)
    assert (report.loaded, report.skipped) == (3, 2)
    assert len(dataset) == 3
    assert [s.id for s in dataset.samples] == ["3", "4", "5"]
    assert len(report.reasons) == 2
    assert "gone.npy" in report.reasons[0] and "row 1" in report.reasons[0]
    assert "also_gone.png" in report.reasons[1] and "row 2" in report.reasons[1]


def test_all_bad_with_skip_bad_still_raises(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"image": "nope.npy"}) + "\n")
    with pytest.raises(DataError, match="no usable samples"):
        _load(manifest_records(manifest, _modalities()), skip_bad=True)


def test_malformed_json_line_names_the_row(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "one"}\n{"text": "two"}\n{"text": "three"\n{"text": "four"}\n')
    with pytest.raises(DataError, match="not valid JSON") as exc:
        manifest_records(manifest, _modalities())
    assert exc.value.row == 3 and exc.value.path == str(manifest)
    assert "row 3" in str(exc.value)


def test_jsonl_row_that_is_not_an_object_names_the_row(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "one"}\n["text", "two"]\n')
    with pytest.raises(DataError, match="object") as exc:
        manifest_records(manifest, _modalities())
    assert exc.value.row == 2


def test_csv_rows_count_from_one_after_the_header(tmp_path: Path) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("text,label\nfine,1\nalso fine,2\nbad label,seven\n")
    records = manifest_records(manifest, _modalities())
    assert [r.row for r in records] == [1, 2, 3]
    with pytest.raises(DataError, match="'seven'") as exc:
        _load(records)
    assert exc.value.row == 3 and "row 3" in str(exc.value)


def test_bad_text_value_in_a_manifest_names_the_manifest_and_row(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"text": "ok"}\n{"text": "   "}\n')
    with pytest.raises(DataError, match="empty") as exc:
        _load(manifest_records(manifest, _modalities()))
    assert exc.value.path == str(manifest) and exc.value.row == 2


def test_manifest_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        manifest_records(tmp_path / "absent.jsonl", _modalities())
    other = tmp_path / "m.txt"
    other.write_text("x")
    with pytest.raises(DataError, match="jsonl"):
        manifest_records(other, _modalities())
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"caption": "x"}\n')
    with pytest.raises(DataError, match="none of the modality columns"):
        manifest_records(wrong, _modalities())
    empty_row = tmp_path / "empty_row.jsonl"
    empty_row.write_text('{"text": "x"}\n{"label": 1}\n')
    with pytest.raises(DataError, match="no modality present") as exc:
        _load(manifest_records(empty_row, _modalities()))
    assert exc.value.row == 2


def _write_wav(path: Path, freq: float, rate: int = 8000) -> np.ndarray:
    wave = (0.3 * np.sin(2 * np.pi * freq * np.arange(rate // 4) / rate)).astype(np.float32)
    soundfile.write(path, wave, rate, subtype="FLOAT")
    return wave


def test_folder_source_takes_labels_from_file_names(tmp_path: Path) -> None:
    folder = tmp_path / "speech"
    (folder / "bob").mkdir(parents=True)
    waves = {
        "3_alice_0.wav": _write_wav(folder / "3_alice_0.wav", 300),
        "7_alice_1.wav": _write_wav(folder / "7_alice_1.wav", 700),
        "bob/0_bob_0.wav": _write_wav(folder / "bob" / "0_bob_0.wav", 500),
        "noise.wav": _write_wav(folder / "noise.wav", 900),
    }
    (folder / "readme.md").write_text("not audio")
    audio = build_modality("audio", {"frames": 16})
    records = folder_records(
        folder, "audio", r"^(?P<label>\d)_", glob="**/*", suffixes=audio.file_suffixes
    )
    assert [r.id for r in records] == [
        "3_alice_0.wav",
        "7_alice_1.wav",
        "bob/0_bob_0.wav",
        "noise.wav",
    ]
    assert [r.label for r in records] == ["3", "7", "0", None]
    dataset = _load(records, {"audio": audio})
    assert dataset.labels().tolist() == [3, 7, 0, UNLABELLED]
    for sample in dataset.samples:
        reference = audio.load(waves[sample.id])  # the same samples, given as an array
        torch.testing.assert_close(sample.values["audio"], reference, rtol=0, atol=0)


def test_folder_source_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="folder not found"):
        folder_records(tmp_path / "absent", "audio", r"(?P<label>\d)")
    with pytest.raises(DataError, match="named group"):
        folder_records(tmp_path, "audio", r"(\d)_")
    with pytest.raises(DataError, match="no files"):
        folder_records(tmp_path, "audio", r"(?P<label>\d)", glob="*.wav")


def test_bad_file_in_a_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "1_x.wav").write_bytes(b"RIFF not really a wave file")
    records = folder_records(tmp_path, "audio", r"^(?P<label>\d)_")
    with pytest.raises(DataError, match="cannot read audio") as exc:
        _load(records, {"audio": build_modality("audio")})
    assert exc.value.path == str(tmp_path / "1_x.wav")


def test_string_labels_resolve_through_class_names(tmp_path: Path) -> None:
    manifest = tmp_path / "m.jsonl"
    labels = ["cat", "dog", None, "1", 0, "cat"]
    manifest.write_text(
        "".join(json.dumps({"text": f"t{i}", "label": y}) + "\n" for i, y in enumerate(labels))
    )
    dataset = _load(manifest_records(manifest, _modalities()), class_names=["cat", "dog"])
    assert dataset.labels().tolist() == [0, 1, UNLABELLED, 1, 0, 0]
    assert dataset.class_names == ["cat", "dog"]


@pytest.mark.parametrize(
    ("bad", "match"), [("bird", "'bird'"), (2, "outside"), (-3, "outside"), (1.5, "1.5")]
)
def test_unknown_label_errors_with_the_row(tmp_path: Path, bad: Any, match: str) -> None:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(
        json.dumps({"text": "a", "label": "cat"})
        + "\n"
        + json.dumps({"text": "b", "label": bad})
        + "\n"
    )
    with pytest.raises(DataError, match=match) as exc:
        _load(manifest_records(manifest, _modalities()), class_names=["cat", "dog"])
    assert exc.value.row == 2 and exc.value.path == str(manifest)


def test_array_records_from_npz(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    images = rng.uniform(0, 16, (5, 8, 8))
    captions = np.array([f"caption {i}" for i in range(5)])
    labels = np.array([4, 1, 0, 1, 3])
    path = tmp_path / "d.npz"
    np.savez(path, images=images, captions=captions, labels=labels)
    records = array_records(path, {"image": "images", "text": "captions"})
    assert [r.row for r in records] == [1, 2, 3, 4, 5]
    modalities = {
        "image": build_modality("image", {"size": (8, 8), "input_max": 16}),
        "text": build_modality("text"),
    }
    dataset = _load(records, modalities)
    assert dataset.labels().tolist() == labels.tolist()
    for i, sample in enumerate(dataset.samples):
        assert sample.values["text"] == f"caption {i}" and isinstance(sample.values["text"], str)
        np.testing.assert_allclose(sample.values["image"][0].numpy(), images[i] / 16, atol=1e-7)


def test_array_records_with_mismatched_lengths_errors(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(
        path, images=np.zeros((5, 8, 8)), captions=np.array(["a"] * 4), labels=np.zeros(5, int)
    )
    with pytest.raises(DataError, match="disagree") as exc:
        array_records(path, {"image": "images", "text": "captions"})
    assert exc.value.path == str(path)
    np.savez(path, images=np.zeros((5, 8, 8)), labels=np.zeros(6, int))
    with pytest.raises(DataError, match="disagree"):
        array_records(path, {"image": "images"})
    with pytest.raises(DataError, match=r"\['sounds'\] not in the file") as exc:
        array_records(path, {"audio": "sounds"})
    assert "images" in str(exc.value)  # names what the file does hold
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not an archive" * 20)
    with pytest.raises(DataError, match="cannot read arrays") as exc:
        array_records(garbage, {"image": "images"})
    assert exc.value.path == str(garbage)
    with pytest.raises(DataError, match="not found"):
        array_records(tmp_path / "absent.npz", {"image": "images"})


def test_bad_array_row_names_the_file_and_row(tmp_path: Path) -> None:
    images = np.zeros((3, 8, 8))
    images[2, 0, 0] = np.nan
    path = tmp_path / "d.npz"
    np.savez(path, images=images)
    with pytest.raises(DataError, match="NaN") as exc:
        _load(array_records(path, {"image": "images"}))
    assert exc.value.path == str(path) and exc.value.row == 3


def _samples() -> list[Sample]:
    rng = np.random.default_rng(3)
    image = build_modality("image", {"size": (8, 8)})
    img = [image.load(rng.uniform(0, 1, (8, 8)).astype(np.float32)) for _ in range(3)]
    return [
        Sample({"image": img[0], "text": "zero"}, label=2, id="a"),
        Sample({"text": "one"}, label=UNLABELLED, id="b"),
        Sample({"image": img[1]}, label=0, id="c"),
        Sample({"image": img[2], "text": "three"}, id="d"),
    ]


def test_collate_masks_placeholders_and_labels() -> None:
    samples = _samples()
    modalities = {**_modalities(), "audio": build_modality("audio", {"frames": 8})}
    batch = collate(samples, modalities)
    assert batch["image_mask"].dtype == torch.bool
    assert batch["image_mask"].tolist() == [True, False, True, True]
    assert batch["text_mask"].tolist() == [True, True, False, True]
    assert "audio" not in batch and "audio_mask" not in batch  # absent from every sample
    assert batch["image"].shape == (4, 1, 8, 8)
    for i in (0, 2, 3):
        torch.testing.assert_close(batch["image"][i], samples[i].values["image"], rtol=0, atol=0)
    torch.testing.assert_close(batch["image"][1], torch.zeros(1, 8, 8), rtol=0, atol=0)
    assert batch["text"] == ["zero", "one", "[missing]", "three"]
    assert batch["label"].dtype == torch.int64
    assert batch["label"].tolist() == [2, -1, 0, -1]
    assert batch["id"] == ["a", "b", "c", "d"]


def test_dataset_batch_uses_collate_on_the_chosen_indices() -> None:
    dataset = MultiModalDataset(_samples(), _modalities())
    batch = dataset.batch([3, 1])
    assert batch["id"] == ["d", "b"]
    assert batch["image_mask"].tolist() == [True, False]
    assert batch["label"].tolist() == [-1, -1]


def test_without_labels_removes_every_label_and_leaves_the_original() -> None:
    samples = _samples()
    dataset = MultiModalDataset(samples, _modalities(), class_names=["x", "y", "z"])
    before = dataset.labels().tolist()
    blind = dataset.without_labels()
    assert blind.labels().tolist() == [UNLABELLED] * 4
    assert dataset.labels().tolist() == before == [2, -1, 0, -1]
    assert blind.class_names == ["x", "y", "z"]
    assert [s.id for s in blind.samples] == [s.id for s in dataset.samples]
    assert blind[0].values["image"] is dataset[0].values["image"]  # a view: no copy of data
    assert blind.has("text").tolist() == dataset.has("text").tolist()


def test_load_record_unknown_modality_names_the_row() -> None:
    record = RawRecord(values={"smell": "roses"}, path="m.jsonl", row=9)
    with pytest.raises(DataError, match="smell") as exc:
        load_record(record, _modalities(), None)
    assert exc.value.row == 9
