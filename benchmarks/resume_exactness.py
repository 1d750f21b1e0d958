"""Resume exactness on the digits benchmark: kill a run with SIGKILL at a random step, resume it,
and compare its final weights with an uninterrupted run's.

    .venv/bin/python benchmarks/resume_exactness.py --epochs 4 --seed 1

Bar (core issue): max abs difference 0 on CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from safetensors.torch import load_file

from anybind.recipes.demo import digits_config_path

KILLED = """
import os, signal, sys
from anybind.recipes.train import train
kill_at = int(sys.argv[3])
def after_step(step):
    if step == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
train(sys.argv[1], sys.argv[2], overrides=sys.argv[4:], progress=False, after_step=after_step)
"""


def killed_run(out: Path, overrides: list[str], kill_at: int) -> int:
    """Train and die by SIGKILL right after step `kill_at` (the test hook of `train`)."""
    cmd = [sys.executable, "-c", KILLED, str(digits_config_path()), str(out), str(kill_at)]
    return subprocess.run([*cmd, *overrides], capture_output=True).returncode


def train_cli(out: Path, overrides: list[str], *extra: str, env: dict | None = None) -> int:
    cmd = [
        sys.executable,
        "-m",
        "anybind.cli.main",
        "train",
        str(digits_config_path()),
        *overrides,
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]
    return subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True).returncode


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill step")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/resume.json"))
    args = parser.parse_args()
    overrides = [f"optim.epochs={args.epochs}", "train.checkpoint_every=10"]
    with tempfile.TemporaryDirectory() as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        assert train_cli(a, overrides) == 0
        total = json.loads((a / "summary.json").read_text())["steps"]
        # after the first checkpoint (step 10), so that the run really resumes mid-way
        kill_at = random.Random(args.seed).randint(11, total - 1)
        rc = killed_run(b, overrides, kill_at)
        assert rc == -9, rc
        assert train_cli(b, overrides, "--resume") == 0
        resumed_from = json.loads((b / "summary.json").read_text())["resumed_from"]
        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        diff = max((wa[k] - wb[k]).abs().max().item() for k in wa)
    result = {
        "total_steps": total,
        "killed_at_step": kill_at,
        "resumed_from": resumed_from,
        "tensors": len(wa),
        "max_abs_difference": diff,
    }
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
