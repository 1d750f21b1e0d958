"""Evaluation protocols for adaptation (CoOp / CoCoOp conventions, computed in code).

- `adapt_eval_split`: the target data is split once into an adaptation part and an evaluation part
  (stratified when labels exist, by a seeded permutation); every method of a comparison adapts on
  the first and is scored on the second, so no sample is ever both.
- `few_shot_indices`: K samples per class drawn from the adaptation part, per seed.
- `base_novel_split`: classes sorted by id, base = the first ceil(C/2), novel = the rest; each
  half is evaluated over its own classes only; `harmonic_mean` combines them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np
import torch

from anybind.errors import AnybindError


def adapt_eval_split(
    n: int, labels: torch.Tensor | None = None, *, eval_fraction: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (adapt, eval), disjoint and covering 0..n-1; stratified by label if given."""
    if not 0.0 < eval_fraction < 1.0:
        raise AnybindError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    rng = np.random.default_rng(seed)
    groups = (
        [np.arange(n)]
        if labels is None
        else [np.flatnonzero(labels.numpy() == c) for c in np.unique(labels.numpy())]
    )
    adapt, evaluate = [], []
    for g in groups:
        g = rng.permutation(g)
        k = int(round(len(g) * eval_fraction))
        evaluate.append(g[:k])
        adapt.append(g[k:])
    return np.sort(np.concatenate(adapt)), np.sort(np.concatenate(evaluate))


def few_shot_indices(
    labels: torch.Tensor, shots: int, seed: int, classes: Sequence[int] | None = None
) -> np.ndarray:
    """`shots` indices per class (of `classes`, default all present), drawn without replacement."""
    y = labels.numpy()
    classes = sorted(set(y.tolist()) - {-1}) if classes is None else list(classes)
    rng = np.random.default_rng(1000 + seed)
    picked = []
    for c in classes:
        pool = np.flatnonzero(y == c)
        if len(pool) < shots:
            raise AnybindError(f"class {c} has {len(pool)} samples, fewer than {shots} shots")
        picked.append(rng.choice(pool, shots, replace=False))
    return np.concatenate(picked)


def base_novel_split(n_classes: int) -> tuple[list[int], list[int]]:
    m = math.ceil(n_classes / 2)
    return list(range(m)), list(range(m, n_classes))


def harmonic_mean(base: float, novel: float) -> float:
    return 0.0 if base + novel == 0 else 2 * base * novel / (base + novel)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def ids_digest(ids: Sequence[str]) -> str:
    """A short fingerprint of a split (sample ids), recorded in results to prove disjointness."""
    return hashlib.sha256("\n".join(sorted(ids)).encode()).hexdigest()[:16]
