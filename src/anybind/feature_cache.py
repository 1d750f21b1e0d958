"""An on-disk cache for expensive frozen features, shared by runs, processes and workers.

A feature is stored under the SHA-256 of its input's bytes and of everything that changes the
output (the representation's options, the model's files), as `.npy` (read back with
`allow_pickle=False`), written atomically: a crash, or two workers computing the same feature
at once, leave either no entry or a whole one. An unreadable entry is recomputed, never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from anybind.checkpoint import atomic_write_bytes


def default_cache_root() -> Path:
    return Path(os.environ.get("ANYBIND_CACHE", Path.home() / ".cache" / "anybind"))


class FeatureCache:
    def __init__(self, root: str | Path, namespace: str, options: dict[str, Any]):
        """`namespace` names the kind of feature; `options` everything its value depends on."""
        self.root = Path(root).expanduser() / namespace
        self.salt = json.dumps(options, sort_keys=True, default=str).encode()
        self.hits = 0
        self.misses = 0

    def key(self, data: np.ndarray) -> str:
        digest = hashlib.sha256(self.salt)
        digest.update(str((data.dtype.str, data.shape)).encode())
        digest.update(np.ascontiguousarray(data).tobytes())
        return digest.hexdigest()

    def path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.npy"

    def get_or_compute(
        self, data: np.ndarray, compute: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        path = self.path(self.key(data))
        if path.is_file():
            try:
                value = np.load(path, allow_pickle=False)
                self.hits += 1
                return value
            except (OSError, ValueError):
                pass  # a torn or foreign file: recompute and replace it
        value = np.asarray(compute(data))
        self.misses += 1
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        # a read-only or full cache disk slows the run down, it does not stop it
        with contextlib.suppress(OSError):
            atomic_write_bytes(path, buffer.getvalue())
        return value
