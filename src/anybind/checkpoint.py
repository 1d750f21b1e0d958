"""Atomic file writes and training checkpoints (weights in safetensors, state loaded weights-only).

A checkpoint is a folder `checkpoints/step-NNNNNNNN/` written under a temporary name and renamed
into place; the file `checkpoints/latest` (itself replaced atomically) names the newest complete
one. A crash at any moment leaves either the old or the new checkpoint, never a torn one.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from anybind.errors import AnybindError

WEIGHTS = "model.safetensors"


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """A failed write names its file: an OSError gets the path it lacks, and torch.save's and
    safetensors' own errors for a short write become the OSError they stand for (a full disk
    when the folder has no room left)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, exc.strerror or str(exc), str(path)) from exc
    except (RuntimeError, SafetensorError) as exc:
        try:
            full = shutil.disk_usage(path.parent).free < 1 << 20
        except OSError:
            full = False
        if full:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path)) from exc
        raise OSError(errno.EIO, f"the write failed ({exc})", str(path)) from exc


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with writing(path):
        _atomic_write_bytes(path, data)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def file_sha256(path: Path) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks (weights files are large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_weights(state: dict[str, torch.Tensor], path: Path) -> None:
    """Safetensors, atomically. Tensors are made contiguous and detached copies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        with writing(path):
            save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise AnybindError(f"weights not found: {path}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise AnybindError(f"cannot read weights {path}: {exc}") from exc


def save_checkpoint(
    root: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    optim_state: dict[str, Any],
    meta: dict[str, Any],
    keep: int = 2,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{step:08d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}."))
    try:
        weights = {k: v.detach().contiguous().cpu() for k, v in model_state.items()}
        with writing(tmp / WEIGHTS):
            save_file(weights, str(tmp / WEIGHTS))
        with writing(tmp / "optimizer.pt"):
            torch.save(optim_state, tmp / "optimizer.pt")
        with writing(tmp / "state.json"):
            (tmp / "state.json").write_text(json.dumps({"step": step, **meta}, indent=2))
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    atomic_write_text(root / "latest", name)
    prune_checkpoints(root, keep)
    return root / name


def latest_checkpoint(root: Path) -> Path | None:
    """The checkpoint `latest` names, if it is complete. The pointer must name a step folder of
    this run (`step-NNNNNNNN`): a pointer to anywhere else is refused, never followed."""
    pointer = root / "latest"
    if not pointer.is_file():
        return None
    name = pointer.read_text(encoding="utf-8", errors="replace").strip()
    if not re.fullmatch(r"step-\d{8}", name):
        raise AnybindError(f"{pointer} names {name!r}, not a step-NNNNNNNN folder of this run")
    path = root / name
    return path if (path / "state.json").is_file() else None


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """Weights, optimizer state (weights_only: no arbitrary unpickling) and meta."""
    try:
        weights = load_file(str(path / WEIGHTS))
        optim = torch.load(path / "optimizer.pt", map_location="cpu", weights_only=True)
        meta = read_state(path)
    except AnybindError:
        raise
    except Exception as exc:
        raise AnybindError(f"cannot read checkpoint {path}: {exc}") from exc
    return weights, optim, meta


def read_state(path: Path) -> dict[str, Any]:
    """A checkpoint's state.json: an object with a whole, non-negative "step"."""
    file = path / "state.json"
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnybindError(f"cannot read {file}: {exc}") from None
    step = meta.get("step") if isinstance(meta, dict) else None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise AnybindError(f'{file}: "step" must be a whole number ≥ 0, not {step!r}')
    return meta


def prune_checkpoints(root: Path, keep: int) -> None:
    steps = sorted(p for p in root.glob("step-*") if p.is_dir())
    for old in steps[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in root.glob(".step-*"):  # temporaries of a crashed write
        shutil.rmtree(stale, ignore_errors=True)
