"""The text modality: str or .txt file → stripped, non-empty, length-capped str."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from anybind.errors import DataError
from anybind.modalities import build_modality


def test_strips_whitespace() -> None:
    assert build_modality("text").load("  \t a photo of a seven \n") == "a photo of a seven"


def test_inner_whitespace_and_unicode_are_kept() -> None:
    assert build_modality("text").load(" naïve  café  ✓ ") == "naïve  café  ✓"


@pytest.mark.parametrize("raw", ["", "   ", "\n\t \r\n"])
def test_empty_or_whitespace_raises_data_error(raw: str) -> None:
    with pytest.raises(DataError, match="empty") as exc:
        build_modality("text").load(raw, source="captions.csv")
    assert exc.value.path == "captions.csv"
    assert "captions.csv" in str(exc.value)


@pytest.mark.parametrize("raw", [3, 2.5, None, b"bytes", ["a", "b"], np.array(["a"])])
def test_non_str_raises_data_error(raw: object) -> None:
    with pytest.raises(DataError, match="must be a string") as exc:
        build_modality("text").load(raw, source="m.jsonl")
    assert exc.value.path == "m.jsonl"


def test_max_chars_truncates_after_stripping() -> None:
    text = build_modality("text", {"max_chars": 5})
    assert text.load("   abcdefgh   ") == "abcde"
    assert text.load("abc") == "abc"


def test_txt_file_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "caption.txt"
    path.write_text("\n  un chat noir — très grand  \n\n", encoding="utf-8")
    assert build_modality("text").load(str(path)) == "un chat noir — très grand"
    assert build_modality("text").load(path) == "un chat noir — très grand"


def test_empty_txt_file_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blank.txt"
    path.write_text("   \n", encoding="utf-8")
    with pytest.raises(DataError, match="empty") as exc:
        build_modality("text").load(str(path))
    assert exc.value.path == str(path)


def test_missing_or_undecodable_txt_file_raises_data_error(tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.txt")
    with pytest.raises(DataError, match="cannot read") as exc:
        build_modality("text").load(missing)
    assert exc.value.path == missing
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("café".encode("latin-1"))
    with pytest.raises(DataError, match="cannot read") as exc:
        build_modality("text").load(str(latin))
    assert exc.value.path == str(latin)


def test_collate_is_a_list_and_placeholder_is_a_non_empty_str() -> None:
    text = build_modality("text")
    assert text.collate(["a", "b"]) == ["a", "b"]
    ph = text.placeholder()
    assert isinstance(ph, str) and text.load(ph) == ph
