"""Training on lazy data (decoded when drawn, in worker processes) equals training on the same
data decoded into memory; bad samples stop the run by file and row, or are skipped and counted;
`anybind check-data` names every bad record before any training."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CLASS_NAMES, tiny_config, tiny_images
from safetensors.torch import load_file

from anybind.config import config_from_dict
from anybind.errors import TrainingError
from anybind.recipes.train import train


def manifest(root: Path, n: int = 96, bad: tuple[int, ...] = ()) -> Path:
    """The tiny task as .npy image files and a JSONL manifest; rows in `bad` hold a torn file."""
    images, labels = tiny_images(n)
    (root / "img").mkdir(parents=True)
    lines = []
    for i, (image, y) in enumerate(zip(images, labels, strict=True)):
        path = root / "img" / f"{i}.npy"
        if i in bad:
            path.write_bytes(b"\x93NUMPY torn")
        else:
            np.save(path, image)
        caption = f"a picture of {CLASS_NAMES[y]}"
        lines.append(json.dumps({"image": f"img/{i}.npy", "text": caption, "label": int(y)}))
    path = root / "train.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def lazy_config(path: Path, **changes) -> dict:
    config = tiny_config(path, **changes)
    source = {"type": "manifest", "path": str(path)}
    config["data"]["train"] = [source]
    config["data"]["eval"] = [source]
    return config


@pytest.mark.slow
def test_lazy_training_in_workers_gives_the_in_memory_weights(tmp_path):
    path = manifest(tmp_path / "data")
    base = lazy_config(path, **{"optim.steps": 8})
    runs = {}
    for name, cache, workers in (("memory", "memory", 0), ("lazy", "none", 2)):
        config = {**base, "data": {**base["data"], "cache": cache, "workers": workers}}
        summary = train(config_from_dict(config), tmp_path / name, progress=False)
        assert summary.steps == 8 and summary.skipped_samples == 0
        runs[name] = load_file(str(tmp_path / name / "model.safetensors"))
    assert runs["memory"].keys() == runs["lazy"].keys()
    for key, value in runs["memory"].items():
        assert (value - runs["lazy"][key]).abs().max().item() == 0.0, key


def test_a_bad_sample_stops_the_run_by_file_and_row(tmp_path):
    path = manifest(tmp_path / "data", bad=(17,))
    config = lazy_config(path, **{"optim.steps": 40, "data.cache": "none"})
    with pytest.raises(TrainingError, match=r"row 18.*17\.npy") as err:
        train(config_from_dict(config), tmp_path / "run", progress=False)
    assert "checkpoint" in str(err.value)


def test_skip_bad_skips_and_counts_during_training(tmp_path):
    path = manifest(tmp_path / "data", bad=(17, 40))
    config = lazy_config(path, **{"optim.steps": 9, "data.cache": "none", "train.log_every": 3})
    summary = train(config_from_dict(config), tmp_path / "run", progress=False, skip_bad=True)
    # 3 batches of 32 per epoch, 3 epochs: each bad row is drawn once per epoch
    assert summary.skipped_samples == 6
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    assert [m["skipped"] for m in logged] == [2, 4, 6]
    saved = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert saved["skipped_samples"] == 6


def test_check_data_names_every_bad_record(tmp_path):
    path = manifest(tmp_path / "data", bad=(3, 50))
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump(lazy_config(path)))
    done = subprocess.run(
        [sys.executable, "-m", "anybind", "check-data", str(config), "--split", "train"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    lines = done.stderr.splitlines()
    assert any("3.npy" in line and "row 4" in line for line in lines), done.stderr
    assert any("50.npy" in line and "row 51" in line for line in lines), done.stderr
    assert any("train: 96 records, 94 good, 2 bad" in line for line in lines), done.stderr
    trained = subprocess.run(
        [sys.executable, "-m", "anybind", "train", str(config), "--out", str(tmp_path / "r"),
         "--check-data", "--quiet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert trained.returncode == 1 and "2 bad records" in trained.stderr
    assert not (tmp_path / "r").exists()  # nothing was written


def test_evaluating_lazy_data_gives_the_in_memory_report(tmp_path):
    from anybind.api import load_run
    from anybind.recipes.data import build_dataset

    path = manifest(tmp_path / "data")
    config = config_from_dict(lazy_config(path, **{"optim.steps": 6, "data.workers": 2}))
    train(config, tmp_path / "run", progress=False)
    run = load_run(tmp_path / "run")
    lazy, _ = build_dataset(config.data.eval, run.config, run.space.modalities, progress=False)
    memory, _ = build_dataset(
        config.data.eval, run.config, run.space.modalities, progress=False, cache="memory"
    )
    a, b = run.evaluate(lazy), run.evaluate(memory)
    assert type(lazy).__name__ == "RecordDataset"
    assert a["zero_shot"] == b["zero_shot"] and a["retrieval"] == b["retrieval"]
