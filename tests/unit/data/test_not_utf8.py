"""Text files that are not UTF-8 (a Latin-1 export, a binary file renamed) are named, with the
row where there is one, never a UnicodeDecodeError traceback."""

from __future__ import annotations

import pytest

from anybind.config import load_config
from anybind.data.sources import manifest_records
from anybind.errors import ConfigError, DataError
from anybind.modalities import build_modality
from anybind.recipes.source_specs import parse_sources


def test_a_jsonl_manifest_names_the_row(tmp_path) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"text": "fine", "label": 0}\n{"text": "caf\xe9", "label": 1}\n')
    with pytest.raises(DataError, match=r"row 2\).*not UTF-8 text") as err:
        manifest_records(path, {"text": build_modality("text")})
    assert str(path) in str(err.value)


def test_a_csv_manifest_names_the_file(tmp_path) -> None:
    path = tmp_path / "m.csv"
    path.write_bytes(b"text,label\nfine,0\ncaf\xe9,1\n")
    with pytest.raises(DataError, match="not UTF-8") as err:
        manifest_records(path, {"text": build_modality("text")})
    assert str(path) in str(err.value)


def test_a_yaml_config_and_a_yaml_source_list_name_the_file(tmp_path) -> None:
    path = tmp_path / "c.yaml"
    path.write_bytes(b"modalities: {text: {encoder: {type: text_bytes}}}\n# caf\xe9\n")
    with pytest.raises(ConfigError, match="not UTF-8 text") as err:
        load_config(path)
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="not UTF-8 text") as err:
        parse_sources([str(path)], modality=None, pattern="", keys=[], preprocess="none")
    assert str(path) in str(err.value)
