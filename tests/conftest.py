"""Shared fixtures: tiny configs and tiny data, so every recipe runs in seconds on CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

CLASS_NAMES = ["zero", "one", "two", "three"]


def tiny_images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8, 8) float images in [0, 1] whose class is a bright row at 2*label, plus noise."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, len(CLASS_NAMES), size=n)
    images = rng.uniform(0, 0.2, size=(n, 8, 8)).astype(np.float32)
    for i, y in enumerate(labels):
        images[i, 2 * y : 2 * y + 2, :] = 0.9
    return images, labels.astype(np.int64)


def write_tiny(path: Path, n: int, seed: int = 0) -> Path:
    images, labels = tiny_images(n, seed=seed)
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    np.savez(path, images=images, labels=labels, captions=captions)
    return path


def heldout_of(npz: Path) -> Path:
    """The held-out set beside a training file: other samples of the same task."""
    return npz.with_name(f"{npz.stem}-heldout.npz")


@pytest.fixture
def tiny_npz(tmp_path: Path) -> Path:
    """96 training samples, and 48 held-out ones beside them (`heldout_of`), which the tiny
    config evaluates on: a training test never scores its own training file."""
    write_tiny(heldout_of(tmp_path / "tiny.npz"), 48, seed=1)
    return write_tiny(tmp_path / "tiny.npz", 96)


def tiny_config(npz: Path, **changes: Any) -> dict[str, Any]:
    """Image + byte-level text, both trained from scratch: fast and fully deterministic."""
    config: dict[str, Any] = {
        "modalities": {
            "image": {
                "options": {"size": [8, 8]},
                "encoder": {"type": "image_cnn", "width": 8, "stages": 2},
            },
            "text": {
                "encoder": {
                    "type": "text_bytes",
                    "width": 16,
                    "layers": 1,
                    "heads": 2,
                    "max_bytes": 24,
                }
            },
        },
        "space": {"dim": 16},
        "objective": {"pairs": "all"},
        "data": {
            "class_names": CLASS_NAMES,
            "train": [
                {
                    "type": "arrays",
                    "path": str(npz),
                    "keys": {"image": "images", "text": "captions"},
                }
            ],
            "eval": [
                {
                    "type": "arrays",
                    # held out when the file has its held-out set beside it (`tiny_npz`)
                    "path": str(heldout_of(npz) if heldout_of(npz).is_file() else npz),
                    "keys": {"image": "images", "text": "captions"},
                }
            ],
        },
        "optim": {"lr": 0.003, "steps": 12, "batch_size": 32, "warmup_steps": 2},
        "train": {"checkpoint_every": 4, "log_every": 2},
        "eval": {"templates": {"image": ["a picture of {}"]}},
    }
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return config
