from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import tiny_config

from anybind.config import apply_overrides, config_from_dict, load_config, save_config
from anybind.errors import ConfigError


def write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_valid_config_round_trips_through_the_saved_copy(tmp_path, tiny_npz):
    config = load_config(write(tmp_path, tiny_config(tiny_npz)))
    save_config(config, tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").model_dump() == config.model_dump()
    assert config.pairs() == [("image", "text")]


def test_unknown_top_level_key_names_key_and_file(tmp_path, tiny_npz):
    path = write(tmp_path, tiny_config(tiny_npz) | {"optimiser": {"lr": 1}})
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.key == "optimiser" and str(path) in str(err.value)
    assert "unknown key" in str(err.value)


def test_unknown_encoder_option_names_the_nested_key(tmp_path, tiny_npz):
    data = tiny_config(tiny_npz)
    data["modalities"]["image"]["encoder"]["widht"] = 4
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, data))
    assert "widht" in str(err.value) and "modalities.image" in str(err.value)


def test_unknown_modality_option_is_an_error(tmp_path, tiny_npz):
    data = tiny_config(tiny_npz)
    data["modalities"]["image"]["options"]["colour"] = 3
    with pytest.raises(ConfigError, match="colour"):
        load_config(write(tmp_path, data))


def test_wrong_type_names_the_key(tmp_path, tiny_npz):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, tiny_config(tiny_npz)), ["optim.lr=fast"])
    assert err.value.key == "optim.lr"


@pytest.mark.parametrize(
    "overrides, fragment",
    [
        (["objective.pairs=anchor"], "objective.anchor"),
        (["objective.anchor=audio"], "objective.anchor"),
        (["optim.epochs=3"], "optim.epochs and optim.steps"),
        (["modalities.image.encoder.type=audio_cnn"], "modalities.image.encoder.type"),
        (["modalities.text.encoder.type=nonesuch"], "nonesuch"),
    ],
)
def test_impossible_combinations_are_errors(tmp_path, tiny_npz, overrides, fragment):
    with pytest.raises(ConfigError, match=fragment.replace(".", r"\.")):
        load_config(write(tmp_path, tiny_config(tiny_npz)), overrides)


def test_audio_encoder_needing_waveforms_rejects_log_mel(tiny_npz):
    data = tiny_config(tiny_npz)
    data["modalities"]["audio"] = {
        "options": {"representation": "log_mel"},
        "encoder": {"type": "hf_audio", "path": "/nowhere"},
    }
    with pytest.raises(ConfigError, match="waveform"):
        config_from_dict(data)


def test_dotted_overrides_set_nested_values_and_list_items(tiny_npz):
    data = tiny_config(tiny_npz)
    out = apply_overrides(data, ["optim.lr=1e-3", "data.train.0.label_key=y", "space.dim=32"])
    assert out["optim"]["lr"] == 1e-3 and out["space"]["dim"] == 32
    assert out["data"]["train"][0]["label_key"] == "y"
    assert data["optim"]["lr"] == 0.003  # the input is not mutated
    with pytest.raises(ConfigError, match="index"):
        apply_overrides(data, ["data.train.5.path=x"])
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(data, ["optim.lr"])


def test_missing_file_and_bad_yaml_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("modalities: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(bad)


def test_relative_data_paths_are_relative_to_the_config_not_the_cwd(
    tmp_path, tiny_npz, monkeypatch
):
    import shutil

    (tmp_path / "project" / "configs").mkdir(parents=True)
    (tmp_path / "project" / "data").mkdir()
    shutil.copy(tiny_npz, tmp_path / "project" / "data" / "tiny.npz")
    data = tiny_config(tiny_npz)
    for source in data["data"]["train"] + data["data"]["eval"]:
        source["path"] = "../data/tiny.npz"
    data["data"]["train"] = [{"type": "shards", "path": "pipe:cat s-{0..3}.tar"}]
    cfg = tmp_path / "project" / "configs" / "c.yaml"
    cfg.write_text(yaml.safe_dump(data))
    monkeypatch.chdir(tmp_path)  # somewhere else
    config = load_config("project/configs/c.yaml")
    expected = str((tmp_path / "project" / "data" / "tiny.npz").resolve())
    assert [s.path for s in config.data.eval] == [expected]
    assert config.data.train[0].path == "pipe:cat s-{0..3}.tar"  # commands are left alone
    save_config(config, tmp_path / "saved.yaml")  # a run folder's copy holds them absolute
    assert load_config(tmp_path / "saved.yaml").data.eval[0].path == expected
