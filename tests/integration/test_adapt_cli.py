"""`anybind adapt` and `anybind eval --adapter` end to end on a tiny run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from conftest import tiny_config, tiny_images
from typer.testing import CliRunner

from anybind.checkpoint import WEIGHTS
from anybind.cli.main import app
from anybind.config.load import config_from_dict
from anybind.recipes.train import train

runner = CliRunner()


def test_adapt_then_eval_with_the_adapter(tmp_path: Path, tiny_npz: Path) -> None:
    run = tmp_path / "run"
    train(config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 6})), run, progress=False)
    base = (run / WEIGHTS).read_bytes()
    images, labels = tiny_images(60, seed=5)
    target = tmp_path / "target.npz"
    np.savez(target, images=np.clip(images + 0.1, 0, 1), labels=labels)
    adapter, report = tmp_path / "adapter", tmp_path / "adapt.json"
    args = ["adapt", str(run), "--data", str(target), "--keys", "image=images", "--quiet"]
    result = runner.invoke(
        app,
        [*args, "--method", "cross-modal-probe", "--shots", "2", "--set", "steps=30"]
        + ["--out", str(adapter), "--json", str(report)],
    )
    assert result.exit_code == 0, result.output
    assert "zero-shot" in result.output and "adapted" in result.output
    record = json.loads(report.read_text())
    assert record["train_samples"] == 8 and record["options"]["steps"] == 30
    assert record["split"]["overlap"] == 0 and record["split"]["eval_samples"] == 30
    assert (run / WEIGHTS).read_bytes() == base

    # eval with the adapter on the same file leaves the adaptation samples out
    evaluated = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        ["eval", str(run), "--data", str(target), "--keys", "image=images", "--quiet"]
        + ["--adapter", str(adapter), "--json", str(evaluated)],
    )
    assert result.exit_code == 0, result.output
    ev = json.loads(evaluated.read_text())
    assert ev["excluded_adaptation_samples"] == 30 and ev["samples"] == 30
    assert ev["zero_shot"]["image"]["top1"] == record["adapted"]["top1"]

    # errors are one line naming the problem, exit code 2
    bad = runner.invoke(app, [*args, "--method", "nope", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "unknown adaptation method 'nope'" in bad.output
    bad = runner.invoke(
        app,
        [*args, "--method", "tent", "--set", "lrr=1", "--out", str(tmp_path / "x")],
    )
    assert bad.exit_code == 2 and "tent.lrr" in bad.output
    bad = runner.invoke(app, [*args, "--method", "lora", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "--shots" in bad.output
    bad = runner.invoke(app, ["eval", str(run), "--adapter", str(tmp_path / "missing")])
    assert bad.exit_code == 2 and "not an adapter folder" in bad.output

    # a corrupt target sample is named (file and row), or skipped and counted with --skip-bad
    broken = images.copy().astype(np.float32)
    broken[7, 0, 0] = np.nan
    np.savez(target, images=broken, labels=labels)
    bad = runner.invoke(app, [*args, "--method", "tent", "--out", str(tmp_path / "x")])
    assert bad.exit_code == 2 and "target.npz" in bad.output and "row 8" in bad.output  # 1-based
    ok = runner.invoke(app, [*args, "--method", "tent", "--skip-bad", "--out", str(tmp_path / "y")])
    assert ok.exit_code == 0, ok.output
    assert "skipped 1 unreadable samples" in ok.output


def test_python_twin_matches_the_cli_record(tmp_path: Path, tiny_npz: Path) -> None:
    import anybind

    run = tmp_path / "run"
    train(config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 6})), run, progress=False)
    images, labels = tiny_images(40, seed=6)
    target = tmp_path / "target.npz"
    np.savez(target, images=images, labels=labels)
    from anybind.config.schema import ArraysSource

    source = ArraysSource(path=str(target), keys={"image": "images"})
    record = anybind.adapt_run(run, "tent", [source], out=tmp_path / "a")
    assert record["modality"] == "image" and record["labels_seen"] is False
    adapted = anybind.load_adapted(tmp_path / "a", run)
    assert adapted.adaptation.method == "tent"
    assert set(adapted.adaptation.tower_states) == {"image"}
    result = runner.invoke(
        app,
        ["adapt", str(run), "--data", str(target), "--keys", "image=images", "--quiet"]
        + ["--method", "tent", "--out", str(tmp_path / "b"), "--json", str(tmp_path / "b.json")],
    )
    assert result.exit_code == 0, result.output
    cli = json.loads((tmp_path / "b.json").read_text())
    assert cli["adapted"] == record["adapted"] and cli["zero_shot"] == record["zero_shot"]
