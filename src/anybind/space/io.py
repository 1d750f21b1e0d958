"""Save and load a space: resolved config (YAML) + weights (safetensors)."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from anybind.checkpoint import WEIGHTS, file_sha256, latest_checkpoint, load_weights, save_weights
from anybind.config import load_config, save_config
from anybind.errors import AnybindError, IncompleteRunWarning
from anybind.run_status import RunStatus, require_complete
from anybind.space.base_run import base_dir, base_keys
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
    attach_base(space, run_dir)
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


def attach_base(space: Space, run_dir: Path) -> None:
    """Copy the base run's tensors into `space` (a no-op for a run that extends nothing)."""
    base = space.config.base
    if base is None:
        return
    folder = base_dir(run_dir, base)
    weights = folder / WEIGHTS
    if not weights.is_file():
        raise AnybindError(f"{run_dir} extends {folder}, which holds no {WEIGHTS}")
    if file_sha256(weights) != base.weights_sha256:
        raise AnybindError(
            f"{run_dir} was extended from other weights than {weights} now holds (SHA-256 "
            "differs): the base run changed since"
        )
    source = load_space(folder).state_dict()
    own = space.state_dict()
    for key in base_keys(space):
        if key not in source or source[key].shape != own[key].shape:
            raise AnybindError(f"{run_dir}: the base run {folder} has no matching '{key}'")
    with torch.no_grad():
        for key in base_keys(space):
            own[key].copy_(source[key])


def init_from_base(space: Space) -> None:
    """Copy each `init_from` base encoder's weights into the new tower's encoder (its
    `init_target`, e.g. a video encoder's per-frame image encoder). A tuner attached to the
    target wraps its layers (peft's `base_layer`), so names are compared without that level."""
    for name, mc in space.config.modalities.items():
        if mc.init_from is None:
            continue
        source = space.towers[mc.init_from].encoder.state_dict()
        target = space.towers[name].encoder.init_target()
        own = {k.replace(".base_layer", ""): v for k, v in target.state_dict().items()}
        missing = [k for k in source if k not in own or own[k].shape != source[k].shape]
        if missing:
            raise AnybindError(
                f"modalities.{name}.init_from: the encoder of '{mc.init_from}' does not fit "
                f"this one (no matching {missing[:3]})"
            )
        with torch.no_grad():
            for key, value in source.items():
                own[key].copy_(value)
