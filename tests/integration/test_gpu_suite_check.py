"""The prepared GPU suite runs at tiny sizes on CPU (`gpu_suite.sh --check`), so the script a lent
GPU machine will run cannot rot while none is lent: both halves start, every loss runs, the tiled
losses equal the dense ones, and the training comparison reports two real rates."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_suite_check_runs_both_halves_on_cpu(tmp_path: Path) -> None:
    proc = subprocess.run(
        ["bash", str(ROOT / "benchmarks" / "gpu_suite.sh"), "--check", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PY": sys.executable},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    contrastive = json.loads((tmp_path / "contrastive.json").read_text())
    rows = {r["method"]: r for r in contrastive["rows"]}
    assert set(rows) == {"naive", "tiled", "naive_sigmoid", "tiled_sigmoid"}
    assert all(r["status"] == "ok" for r in rows.values())
    assert rows["tiled"]["loss"] == pytest.approx(rows["naive"]["loss"], rel=1e-5)
    assert rows["tiled_sigmoid"]["loss"] == pytest.approx(rows["naive_sigmoid"]["loss"], rel=1e-5)
    # random unit rows (D = 32) at scale s = 1/0.07: logits of variance s²/D, so the loss is
    # about ln 256 + s²/(2D) ≈ 8.7
    assert 0.5 * math.log(256) < rows["naive"]["loss"] < 3 * math.log(256)
    train = json.loads((tmp_path / "train.json").read_text())
    assert train["smoke"] is True and train["device"] == "cpu"
    assert train["plain_samples_per_s"] > 0 and train["anybind_samples_per_s"] > 0
    assert train["ratio"] == pytest.approx(
        train["anybind_samples_per_s"] / train["plain_samples_per_s"]
    )
