"""What a training run keeps in its folder: the checks before writing, the metrics log, the
checkpointed training state and the summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anybind.checkpoint import atomic_write_text
from anybind.config import Config, load_config
from anybind.errors import AnybindError, ConfigError
from anybind.space import Space
from anybind.space.io import CONFIG


def check_run_folder(out: Path, config: Config, resume: bool) -> None:
    """A new run needs a new folder; a resumed one the same config as the interrupted run."""
    saved = out / CONFIG
    if resume and saved.is_file() and load_config(saved).model_dump() != config.model_dump():
        raise ConfigError("--resume needs the same config as the interrupted run", file=str(saved))
    if not resume and saved.is_file():
        raise AnybindError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )


def training_state(space: Space, objective: nn.Module) -> dict[str, torch.Tensor]:
    return {
        **space.persistent_state(),
        **{f"objective.{k}": v for k, v in objective.state_dict().items()},
    }


def load_training_state(
    space: Space, objective: nn.Module, weights: dict[str, torch.Tensor]
) -> None:
    objective.load_state_dict(
        {k.removeprefix("objective."): v for k, v in weights.items() if k.startswith("objective.")}
    )
    space.load_persistent_state(
        {k: v for k, v in weights.items() if not k.startswith("objective.")}
    )


def write_summary(out: Path, summary: dict[str, Any]) -> None:
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))


class MetricsLog:
    """metrics.jsonl (one JSON object per logged step) + TensorBoard events, resume-aware:
    lines past the resumed step, written by the interrupted run, are dropped, and so is a torn
    last line (what a crash or a full disk leaves)."""

    def __init__(self, out: Path, start_step: int):
        self.path = out / "metrics.jsonl"
        if self.path.exists():
            kept = []
            for line in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    step = json.loads(line)["step"]
                except (ValueError, KeyError, TypeError):
                    continue
                if step <= start_step:
                    kept.append(line)
            atomic_write_text(self.path, "".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for k, v in values.items():
            self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.file.close()
        self.tb.close()


#: the packages whose versions can move a run's numbers (kernels, resampling, tokenisers)
ENVIRONMENT_PACKAGES = (
    "torch", "numpy", "scipy", "transformers", "tokenizers", "safetensors", "soundfile",
    "scikit-learn", "pillow", "peft", "espeakng-loader", "onnx", "av", "plyfile", "threadpoolctl",
)  # fmt: skip


def environment() -> dict[str, Any]:
    """What the run ran on: Python, the package versions, threads and the device."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for name in ENVIRONMENT_PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": versions,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda if torch.cuda.is_available() else None,
    }


def write_environment(out: Path) -> None:
    """environment.json in the run folder, so that two runs whose numbers differ can be told
    apart by what they ran on."""
    atomic_write_text(out / "environment.json", json.dumps(environment(), indent=2))
