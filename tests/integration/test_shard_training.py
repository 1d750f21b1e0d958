"""Training and evaluating on streamed shards: `anybind shard` → a `shards` source; a run
stopped mid-epoch resumes to the uninterrupted weights; evaluation over the shards scores what
evaluation over the original files scores."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import tiny_config
from safetensors.torch import load_file
from test_lazy_training import manifest

from anybind.config import config_from_dict
from anybind.errors import ConfigError
from anybind.recipes.train import train


class Stop(Exception):
    pass


def write_shards(tmp_path: Path) -> tuple[Path, Path]:
    path = manifest(tmp_path / "data")
    config = tiny_config(path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(config))
    done = subprocess.run(
        [sys.executable, "-m", "anybind", "shard", str(path), "--out", str(tmp_path / "shards"),
         "--samples-per-shard", "8", "--config", str(tmp_path / "c.yaml"), "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 96 samples (image 96, text 96) in 12 shards" in done.stderr
    return path, tmp_path / "shards"


def shard_config(shards: Path, path: Path, **changes) -> dict:
    config = tiny_config(path, **changes)
    config["data"]["train"] = [{"type": "shards", "path": str(shards / "shard-*.tar"),
                                "shuffle_buffer": 16}]  # fmt: skip
    config["data"]["eval"] = [{"type": "shards", "path": str(shards / "shard-*.tar")}]
    config["data"]["workers"] = 2
    return config


@pytest.mark.slow
def test_a_run_on_shards_stopped_mid_epoch_resumes_exactly(tmp_path):
    path, shards = write_shards(tmp_path)
    config = config_from_dict(shard_config(shards, path, **{"optim.steps": 8}))
    straight = train(config, tmp_path / "straight", progress=False)
    assert straight.steps == 8 and straight.train_samples == 96

    def stop_at_5(step: int) -> None:
        if step == 5:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "stopped", progress=False, after_step=stop_at_5)
    resumed = train(config, tmp_path / "stopped", progress=False, resume=True)
    assert resumed.resumed_from == 4  # mid-epoch: 3 steps an epoch
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "stopped" / "model.safetensors"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) == 0.0


def test_a_stream_refuses_to_resume_on_another_world_size(tmp_path):
    path, shards = write_shards(tmp_path)
    config = config_from_dict(shard_config(shards, path, **{"optim.steps": 8}))

    def stop_at_4(step: int) -> None:
        if step == 4:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "run", progress=False, after_step=stop_at_4)
    state = tmp_path / "run" / "checkpoints" / "step-00000004" / "state.json"
    meta = json.loads(state.read_text())
    assert meta["data"] == {"world": 1, "workers": 2}
    state.write_text(json.dumps({**meta, "data": {"world": 2, "workers": 2}}))  # as if torchrun
    with pytest.raises(ConfigError, match="resumes exactly only with the same"):
        train(config, tmp_path / "run", progress=False, resume=True)


def test_evaluating_shards_scores_what_the_files_score(tmp_path):
    from anybind.api import load_run

    path, shards = write_shards(tmp_path)
    config = config_from_dict(shard_config(shards, path, **{"optim.steps": 6}))
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    from_shards = run.evaluate()
    from_files = run.evaluate([str(path)])
    assert from_shards["samples"] == from_files["samples"] == 96
    assert from_shards["zero_shot"] == from_files["zero_shot"]
    assert from_shards["retrieval"] == from_files["retrieval"]
    checked = subprocess.run(
        [sys.executable, "-m", "anybind", "check-data", str(tmp_path / "run" / "config.yaml"),
         "--quiet"], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert checked.returncode == 0 and "train: 96 records, 96 good, 0 bad" in checked.stderr
    json.dumps(from_shards)  # the report is plain JSON
