"""Training end to end: a run killed before, between or right after checkpoints and resumed ends
with exactly the weights of an uninterrupted run; a non-finite loss stops the run and says which
checkpoint is kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import tiny_config
from safetensors.torch import load_file

from anybind.config import config_from_dict
from anybind.errors import AnybindError, TrainingError
from anybind.recipes.train import train


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "anybind.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "resumed_from"),
    [(2, None), (6, 4), (8, 8)],  # before the first checkpoint, between two, right after one
)
def test_resume_after_a_kill_gives_bit_identical_weights(tmp_path, tiny_npz, kill_at, resumed_from):
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_npz, **{"optim.steps": 20})))
    straight = run_cli("train", str(cfg), "--out", str(tmp_path / "a"), "--quiet")
    assert straight.returncode == 0, straight.stderr

    killer = Path(__file__).with_name("killed_train.py")
    killed = subprocess.run(
        [sys.executable, str(killer), str(cfg), str(tmp_path / "b"), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, f"kill at {kill_at}: {killed.stderr}"
    assert not (tmp_path / "b" / "summary.json").exists()

    again = run_cli("train", str(cfg), "--out", str(tmp_path / "b"), "--quiet")
    assert again.returncode == 2 and "--resume" in again.stderr  # never silently restarts

    resumed = run_cli("train", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["resumed_from"] == resumed_from  # checkpoints every 4 steps

    a = load_file(str(tmp_path / "a" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst == 0.0, f"killed at step {kill_at}: max abs difference {worst}"
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no duplicated log lines


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, tiny_npz, monkeypatch):
    from anybind.objectives import infonce

    real = infonce.info_nce
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        calls["n"] += 1
        loss = real(*args, **kwargs)
        return loss * float("nan") if calls["n"] > 6 else loss

    monkeypatch.setattr(infonce, "info_nce", poisoned)
    config = config_from_dict(tiny_config(tiny_npz))
    with pytest.raises(TrainingError, match="step 6: the loss is nan") as err:
        train(config, tmp_path / "run", progress=False)
    assert "The last checkpoint is step-00000004" in str(err.value)
    assert (tmp_path / "run" / "checkpoints" / "latest").read_text() == "step-00000004"


def test_training_learns_the_tiny_task(tmp_path, tiny_npz):
    from anybind.api import load_run

    config = config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 60}))
    summary = train(config, tmp_path / "run", progress=False)
    # 8 same-class positives per row in a batch of 32: the multi-positive optimum is ~log 8 = 2.08,
    # chance is log 32 = 3.47
    first = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    assert summary.steps == 60 and first > 3.0 and summary.final_loss < 2.4
    report = load_run(tmp_path / "run").evaluate()
    assert report["zero_shot"]["image"]["top1"] > 0.9  # chance is 0.25
    assert report["retrieval"]["image->text"]["R@1"] > 0.9
    logged = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert len(logged) == 30 and "samples_per_s" in json.loads(logged[-1])
    assert list((tmp_path / "run" / "tensorboard").iterdir())


def test_resume_with_a_different_config_is_refused(tmp_path, tiny_npz):
    config = config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 4}))
    train(config, tmp_path / "run", progress=False)
    other = config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 8}))
    with pytest.raises(AnybindError, match="same config"):
        train(other, tmp_path / "run", resume=True, progress=False)


def test_bf16_autocast_trains_with_finite_loss(tmp_path, tiny_npz):
    config = config_from_dict(
        tiny_config(tiny_npz, **{"optim.steps": 4, "optim.precision": "bf16"})
    )
    summary = train(config, tmp_path / "run", progress=False)
    assert torch.isfinite(torch.tensor(summary.final_loss))


@pytest.mark.slow
def test_compiled_towers_train_like_eager_ones(tmp_path, tiny_npz):
    changes = {"optim.steps": 3, "train.log_every": 1}
    runs = {}
    for compiled in (False, True):
        config = tiny_config(tiny_npz, **changes, **{"train.compile": compiled})
        config["modalities"]["image"]["encoder"]["dropout"] = 0.0
        for modality in config["modalities"].values():
            modality["augment"] = False
        train(config_from_dict(config), tmp_path / str(compiled), progress=False)
        lines = (tmp_path / str(compiled) / "metrics.jsonl").read_text().splitlines()
        runs[compiled] = [json.loads(line)["loss"] for line in lines]
    assert runs[True] == pytest.approx(runs[False], rel=1e-4)
    a = load_file(str(tmp_path / "False" / "model.safetensors"))
    b = load_file(str(tmp_path / "True" / "model.safetensors"))
    assert a.keys() == b.keys()  # compiled in place: the run folder's keys do not change


def test_compile_wraps_the_trainable_encoders_only(tiny_npz):
    from anybind.recipes.train import compile_towers
    from anybind.space import Space

    config = tiny_config(tiny_npz)
    config["modalities"]["text"]["freeze_encoder"] = True
    space = Space(config_from_dict(config))
    compile_towers(space)
    # nn.Module.compile sets the compiled forward it calls from then on (compiled lazily)
    assert space.towers["image"].encoder._compiled_call_impl is not None
    assert space.towers["text"].encoder._compiled_call_impl is None
