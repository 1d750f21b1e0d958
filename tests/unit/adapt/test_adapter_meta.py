"""An adapter.json that is not an object, or lacks what loading reads, is named."""

from __future__ import annotations

import json

import pytest

from anybind.adapt.store import META, REQUIRED, read_meta
from anybind.errors import AnybindError

GOOD = {
    "method": "linear_probe", "modality": "image", "class_names": ["a"], "templates": ["{}"],
    "tuners": {}, "tower_states": [], "base_run": "/runs/x", "base_weights_sha256": "0" * 64,
}  # fmt: skip


def test_a_complete_adapter_json_reads(tmp_path) -> None:
    (tmp_path / META).write_text(json.dumps(GOOD))
    assert read_meta(tmp_path) == GOOD
    assert set(GOOD) == set(REQUIRED)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[1, 2]", "not a JSON object"),
        ("{not json", "not valid JSON"),
        (json.dumps({k: v for k, v in GOOD.items() if k != "tuners"}), "['tuners']"),
        (json.dumps({**GOOD, "class_names": "a,b"}), "['class_names']"),
    ],
)
def test_a_broken_adapter_json_is_named(tmp_path, text, message) -> None:
    (tmp_path / META).write_text(text)
    with pytest.raises(AnybindError, match="adapter.json") as err:
        read_meta(tmp_path)
    assert message in str(err.value)
