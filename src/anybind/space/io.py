"""Save and load a space: resolved config (YAML) + weights (safetensors)."""

from __future__ import annotations

from pathlib import Path

import torch

from anybind.checkpoint import WEIGHTS, load_weights, save_weights
from anybind.config import load_config, save_config
from anybind.errors import AnybindError
from anybind.space.model import Space

CONFIG = "config.yaml"


def save_space(
    space: Space, run_dir: Path, *, state: dict[str, torch.Tensor] | None = None
) -> None:
    """Config and weights; `state` replaces the space's own state dict (FSDP: the full state
    gathered from the shards)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(space.config, run_dir / CONFIG)
    save_weights(space.persistent_state(state), run_dir / WEIGHTS)


def load_space(
    run_dir: str | Path, *, weights: Path | None = None, device: str | torch.device = "cpu"
) -> Space:
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise AnybindError(f"{run_dir} is not a run folder (no {CONFIG})")
    space = Space(load_config(run_dir / CONFIG))
    try:
        space.load_persistent_state(load_weights(weights or run_dir / WEIGHTS))
    except AnybindError as exc:
        raise AnybindError(f"{run_dir}: {exc}") from None
    return space.to(device).eval()
