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


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> tuple[Path, Path]:
    """One uninterrupted 20-step run (config, run folder), shared by the kill/resume cases."""
    import numpy as np
    from conftest import CLASS_NAMES, tiny_images

    root = tmp_path_factory.mktemp("straight")
    images, labels = tiny_images(96)
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    np.savez(root / "tiny.npz", images=images, labels=labels, captions=captions)
    cfg = root / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(root / "tiny.npz", **{"optim.steps": 20})))
    done = run_cli("train", str(cfg), "--out", str(root / "a"), "--quiet")
    assert done.returncode == 0, done.stderr
    return cfg, root / "a"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kill_at", "resumed_from"),
    [(2, None), (6, 4), (8, 8)],  # before the first checkpoint, between two, right after one
)
def test_resume_after_a_kill_gives_bit_identical_weights(tmp_path, straight, kill_at, resumed_from):
    cfg, first = straight
    killer = Path(__file__).with_name("killed_train.py")
    killed = subprocess.run(
        [sys.executable, str(killer), str(cfg), str(tmp_path / "b"), str(kill_at)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, f"kill at {kill_at}: {killed.stderr}"
    assert not (tmp_path / "b" / "summary.json").exists()
    status = json.loads((tmp_path / "b" / "status.json").read_text())
    assert status["state"] == "running" and status["step"] == (resumed_from or 0)
    if kill_at == 6:
        again = run_cli("train", str(cfg), "--out", str(tmp_path / "b"), "--quiet")
        assert again.returncode == 2 and "--resume" in again.stderr  # never silently restarts
        refused = run_cli("eval", str(tmp_path / "b"), "--quiet")
        assert refused.returncode == 2 and "did not finish: step 4 of 20" in refused.stderr
        anyway = run_cli("eval", str(tmp_path / "b"), "--quiet", "--allow-incomplete")
        assert anyway.returncode == 0, anyway.stderr
        assert "warning:" in anyway.stderr and "checkpoint step-00000004" in anyway.stderr

    resumed = run_cli("train", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert summary["resumed_from"] == resumed_from  # checkpoints every 4 steps

    a = load_file(str(first / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst == 0.0, f"killed at step {kill_at}: max abs difference {worst}"
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()
    ]
    assert steps == sorted(set(steps)) and steps[-1] == 20  # no duplicated log lines
    assert json.loads((tmp_path / "b" / "status.json").read_text())["state"] == "complete"
    if kill_at == 8:  # --resume on a finished run leaves it alone
        before = (tmp_path / "b" / "summary.json").read_bytes()
        again = run_cli("train", str(cfg), "--out", str(tmp_path / "b"), "--quiet", "--resume")
        assert again.returncode == 0 and "nothing to resume" in again.stdout + again.stderr
        assert (tmp_path / "b" / "summary.json").read_bytes() == before


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
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and status["checkpoint"] == "step-00000004"
    assert "the loss is nan" in status["message"]

    from anybind.api import load_run
    from anybind.errors import IncompleteRunWarning
    from anybind.space.io import load_space

    with pytest.raises(AnybindError, match="failed at step 6 of 12"):
        load_run(tmp_path / "run")
    with pytest.warns(IncompleteRunWarning, match="checkpoint step-00000004"):
        space = load_space(tmp_path / "run", allow_incomplete=True)
    kept = load_file(str(tmp_path / "run" / "checkpoints" / "step-00000004" / "model.safetensors"))
    initial = load_file(str(tmp_path / "run" / "model.safetensors"))
    for key, value in space.state_dict().items():
        assert torch.equal(value, kept[key]), key  # the checkpoint's weights, not the initial
    assert any(not torch.equal(kept[k], initial[k]) for k in initial)


def test_a_run_that_stopped_before_any_checkpoint_says_so(tmp_path, tiny_npz, monkeypatch):
    from anybind.errors import IncompleteRunWarning
    from anybind.objectives import infonce
    from anybind.space.io import load_space

    monkeypatch.setattr(infonce, "info_nce", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(TrainingError, match="No checkpoint was written"):
        train(config_from_dict(tiny_config(tiny_npz)), tmp_path / "run", progress=False)
    with pytest.raises(AnybindError, match="no checkpoint was written, its weights are the init"):
        load_space(tmp_path / "run")
    with pytest.warns(IncompleteRunWarning, match="its initial weights"):
        load_space(tmp_path / "run", allow_incomplete=True)


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
    ran_on = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert ran_on["packages"]["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert ran_on["torch_threads"] == torch.get_num_threads()


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
    from anybind.recipes.train_setup import compile_towers
    from anybind.space import Space

    config = tiny_config(tiny_npz)
    config["modalities"]["text"]["freeze_encoder"] = True
    space = Space(config_from_dict(config))
    compile_towers(space)
    # nn.Module.compile sets the compiled forward it calls from then on (compiled lazily)
    assert space.towers["image"].encoder._compiled_call_impl is not None
    assert space.towers["text"].encoder._compiled_call_impl is None


def test_a_full_disk_at_a_checkpoint_fails_the_run_by_name_and_resume_finishes_it(
    tmp_path, tiny_npz, monkeypatch
):
    """The disk fills while the second checkpoint is written: the run stops with the file and
    the system's reason, keeps the first checkpoint, is refused as a space, and `--resume` (disk
    freed) goes on from that checkpoint to the same weights as an uninterrupted run."""
    import errno

    from anybind import checkpoint as checkpoint_module
    from anybind.recipes import train_checkpoint

    real = checkpoint_module.save_checkpoint
    calls = {"n": 0}

    def filling(folder, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device", str(folder / "x.partial"))
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(train_checkpoint, "save_checkpoint", filling)
    config = config_from_dict(tiny_config(tiny_npz))
    with pytest.raises(TrainingError) as err:
        train(config, tmp_path / "run", progress=False)
    message = str(err.value)
    assert "No space left on device" in message and "x.partial" in message
    assert "The last checkpoint is step-00000004" in message
    status = json.loads((tmp_path / "run" / "status.json").read_text())
    assert status["state"] == "failed" and "No space left" in status["message"]

    from anybind.api import load_run

    with pytest.raises(AnybindError, match="failed at step"):
        load_run(tmp_path / "run")
    monkeypatch.setattr(train_checkpoint, "save_checkpoint", real)
    summary = train(config, tmp_path / "run", resume=True, progress=False)
    assert summary.resumed_from == 4
    train(config, tmp_path / "straight", progress=False)
    resumed = load_file(str(tmp_path / "run" / "model.safetensors"))
    straight = load_file(str(tmp_path / "straight" / "model.safetensors"))
    assert all(torch.equal(resumed[k], straight[k]) for k in straight)


def test_an_out_folder_that_cannot_be_written_is_one_named_line(tmp_path, tiny_npz):
    """`--out` under a regular file (what a read-only or missing mount looks like to a
    process: the folder cannot be made): one line naming the path, exit code 2."""
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file")
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_npz, **{"optim.steps": 2})))
    done = run_cli("train", str(cfg), "--out", str(blocker / "run"), "--quiet")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert f"{blocker}/run: Not a directory" in done.stderr


@pytest.mark.parametrize("cache", ["memory", "none"])
def test_skipping_leaves_too_few_samples_says_how_many_were_skipped(tmp_path, tiny_npz, cache):
    """Three of four rows point at missing files, so --skip-bad leaves one sample: the error
    says how many were skipped and why the first was — before the run folder exists when the
    data is decoded up front, at the first batch when it is decoded as drawn."""
    rows = [{"image": f"img/{i}.npy", "caption": f"a picture of {i}"} for i in range(4)]
    (tmp_path / "img").mkdir()
    import numpy as np

    np.save(tmp_path / "img" / "0.npy", np.zeros((8, 8), dtype=np.float32))
    (tmp_path / "m.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = {"type": "manifest", "path": str(tmp_path / "m.jsonl"),
              "columns": {"image": "image", "text": "caption"}}  # fmt: skip
    config = tiny_config(tiny_npz, **{"data.train": [source], "data.eval": [], "data.cache": cache})
    with pytest.raises(AnybindError) as err:
        train(config_from_dict(config), tmp_path / "run", skip_bad=True, progress=False)
    message = str(err.value)
    assert "3 unreadable" in message and "img/1.npy" in message
    if cache == "memory":
        assert "1 usable training sample" in message
        assert not (tmp_path / "run").exists()
    else:
        status = json.loads((tmp_path / "run" / "status.json").read_text())
        assert status["state"] == "failed" and "3 unreadable" in status["message"]
