"""Save and load a space: resolved config (YAML) + weights (safetensors)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from anybind.checkpoint import WEIGHTS, latest_checkpoint, load_weights, save_weights
from anybind.config import load_config, save_config
from anybind.errors import AnybindError, IncompleteRunWarning
from anybind.run_status import RunStatus, require_complete
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
    run_dir: str | Path,
    *,
    weights: Path | None = None,
    device: str | torch.device = "cpu",
    allow_incomplete: bool = False,
) -> Space:
    """The space of a finished run. A run that failed or did not finish is refused, unless
    `allow_incomplete`: then its last checkpoint's weights are loaded (its initial weights if it
    wrote none), with a warning that says which."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise AnybindError(f"{run_dir} is not a run folder (no {CONFIG})")
    if weights is None:
        status = require_complete(run_dir, allow_incomplete=allow_incomplete)
        if not status.complete:
            weights = incomplete_weights(run_dir, status)
    space = Space(load_config(run_dir / CONFIG))
    try:
        state = load_weights(weights or run_dir / WEIGHTS)
        # a checkpoint also holds the objective's parameters
        space.load_persistent_state(
            {k: v for k, v in state.items() if not k.startswith("objective.")}
        )
    except AnybindError as exc:
        raise AnybindError(f"{run_dir}: {exc}") from None
    return space.to(device).eval()


def incomplete_weights(run_dir: Path, status: RunStatus) -> Path:
    """The weights an incomplete run really holds: its last whole checkpoint's, else the initial
    ones in the folder; a warning says which."""
    last = latest_checkpoint(run_dir / "checkpoints")
    if last is not None and (last / WEIGHTS).is_file():
        chosen, which = last / WEIGHTS, f"the weights of its checkpoint {last.name}"
    else:
        chosen, which = run_dir / WEIGHTS, "its initial weights (no whole checkpoint)"
    warnings.warn(
        IncompleteRunWarning(f"{run_dir} {status.describe()}: using {which}"), stacklevel=3
    )
    return chosen
