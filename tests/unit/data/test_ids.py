"""Sample ids are unique in a data set (adapters, embedding tables and search name samples by
id): a repeated id in one source is named, colliding default ids across sources are qualified."""

from __future__ import annotations

import json

import pytest
from conftest import tiny_config
from pydantic import TypeAdapter

from anybind.config import config_from_dict
from anybind.config.schema import Source
from anybind.data.ids import combine_sources
from anybind.data.sample import RawRecord
from anybind.errors import DataError
from anybind.recipes.data import source_dataset
from anybind.space import Space


def _records(path: str, ids: list[str]) -> list[RawRecord]:
    return [RawRecord(values={"text": i}, id=i, path=path, row=n + 1) for n, i in enumerate(ids)]


def test_a_repeated_id_in_one_source_names_both_rows():
    with pytest.raises(DataError) as info:
        combine_sources([("m.jsonl", _records("m.jsonl", ["a", "b", "a"]))])
    message = str(info.value)
    assert "m.jsonl" in message and "row 3" in message and "first at row 1" in message
    assert "'a'" in message


def test_ids_that_collide_across_sources_are_qualified_with_their_source():
    combined = combine_sources(
        [("a.csv", _records("a.csv", ["1", "2"])), ("b.csv", _records("b.csv", ["2", "3"]))]
    )
    assert [r.id for r in combined] == ["a.csv#1", "a.csv#2", "b.csv#2", "b.csv#3"]
    assert len({r.id for r in combined}) == 4


def test_ids_that_do_not_collide_are_kept_as_they_are():
    combined = combine_sources(
        [("a.csv", _records("a.csv", ["1", "2"])), ("b.csv", _records("b.csv", ["x", "y"]))]
    )
    assert [r.id for r in combined] == ["1", "2", "x", "y"]


def test_one_file_read_by_two_sources_is_told_apart_by_position():
    combined = combine_sources([("a.npz", _records("a.npz", ["0", "1"])),
                                ("a.npz", _records("a.npz", ["0", "1"]))])  # fmt: skip
    assert [r.id for r in combined] == ["a.npz[0]#0", "a.npz[0]#1", "a.npz[1]#0", "a.npz[1]#1"]


def test_a_manifest_with_a_repeated_id_column_fails_before_training(tmp_path, tiny_npz):
    manifest = tmp_path / "m.jsonl"
    rows = [{"id": "s1", "text": "one", "label": 0}, {"id": "s1", "text": "two", "label": 1}]
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    config = config_from_dict(tiny_config(tiny_npz))
    sources = TypeAdapter(list[Source]).validate_python(
        [{"type": "manifest", "path": str(manifest), "columns": {"text": "text"}}]
    )
    with pytest.raises(DataError, match="used twice") as info:
        source_dataset(sources, config, Space(config).modalities, progress=False)
    assert "m.jsonl" in str(info.value) and "row 2" in str(info.value)
