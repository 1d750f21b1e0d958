"""The base of an extended run (`anybind extend`): its frozen towers come from another run folder.

An extended run stores only its new towers' weights; `anybind.space.io.attach_base` loads the
base run (itself possibly an extended one) into the base modalities' towers after checking that
the base weights are the ones the run was extended from (SHA-256 of the base's weights), and
`base_fingerprint` hashes those tensors so that training can prove they did not change.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch

from anybind.config.schema import BaseRunConfig
from anybind.space.model import Space


def base_dir(run_dir: Path, base: BaseRunConfig) -> Path:
    path = Path(base.path)
    return path if path.is_absolute() else (run_dir / path).resolve()


def base_keys(space: Space) -> list[str]:
    """The state-dict keys that belong to the base run: its towers, its shared backbone and
    the logit scale."""
    base = space.config.base
    if base is None:
        return []
    prefixes = tuple(f"towers.{m}." for m in base.modalities) + ("backbone.",)
    return [k for k in space.state_dict() if k.startswith(prefixes) or k == "log_logit_scale"]


def base_fingerprint(space: Space) -> str:
    """SHA-256 over the base tensors' names and bytes."""
    digest = hashlib.sha256()
    state = space.state_dict()
    for key in base_keys(space):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
