"""Values no option can mean are refused when the config is read, naming the key, before any
run folder exists: zero or negative sizes, NaN and infinity, true/false for a number, heads that
do not divide the width, repeated class names."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from anybind.config import load_config
from anybind.errors import ConfigError

CASES = [
    ("space.dim=0", "space.dim", "greater than 0"),
    ("modalities.text.options.max_chars=0", "max_chars", "greater than 0"),
    ("modalities.image.encoder.width=0", "image.encoder.width", "greater than 0"),
    ("modalities.text.encoder.width=-4", "text.encoder.width", "greater than 0"),
    ("modalities.image.options.size=[0,0]", "image.options.size", "greater than 0"),
    ("modalities.text.encoder.heads=3", "text.encoder", "heads (3) must divide width (16)"),
    ("optim.lr=inf", "optim.lr", "finite"),
    ("optim.lr=nan", "optim.lr", "finite"),
    ("optim.steps=true", "optim", "steps: expected a number, got true"),
    ("train.log_every=false", "train", "log_every: expected a number, got false"),
    ("data.class_names=[zero,one,one,two]", "data.class_names", "repeated: ['one']"),
    ("data.class_names=[]", "data.class_names", "at least 1"),
    ("modalities.image.encoder.dropout=1.5", "dropout", "less than 1"),
    ("modalities.image.projection.hidden=0", "projection.hidden", "greater than 0"),
]


@pytest.mark.parametrize(("override", "key", "message"), CASES, ids=[c[0] for c in CASES])
def test_an_impossible_value_names_its_key(tmp_path, tiny_npz, override, key, message) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    with pytest.raises(ConfigError) as err:
        load_config(path, [override])
    assert key in (err.value.key or "") and message in str(err.value), str(err.value)


def test_valid_numbers_still_load(tmp_path, tiny_npz) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    config = load_config(path, ["optim.lr=1e-3", "space.dim=8", "train.compile=false"])
    assert config.space.dim == 8 and config.train.compile is False  # booleans where they belong


def test_train_refuses_before_creating_the_run_folder(tmp_path, tiny_npz) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    out = tmp_path / "run"
    anybind = Path(sys.executable).with_name("anybind")
    done = subprocess.run([str(anybind), "train", str(path), "--out", str(out), "space.dim=0"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 2 and "space.dim" in done.stderr
    assert "Traceback" not in done.stderr and not out.exists()


def test_a_yaml_tag_in_an_override_is_named_and_never_run(tmp_path, tiny_npz) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    marker = tmp_path / "ran"
    override = f'optim.lr=!!python/object/apply:os.system ["touch {marker}"]'
    with pytest.raises(ConfigError, match="not a plain YAML value") as err:
        load_config(path, [override])
    assert err.value.key == "optim.lr" and not marker.exists()
