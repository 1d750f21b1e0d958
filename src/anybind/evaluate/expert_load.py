"""How a routed backbone spread the tokens over its experts (encoders/backbone.py).

From the tokens each expert received per modality and layer (`Backbone.load()`): each expert's
share per modality and layer, its share over all modalities per layer, and the extremes of
share × experts (1 for every expert at a perfectly even load; the bar of a balanced router is
a ratio within [1/2, 2] for every expert of every layer).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def shares(counts: np.ndarray) -> np.ndarray:
    """Assignment counts (..., E) → shares of the total along the last axis."""
    total = counts.sum(axis=-1, keepdims=True)
    return counts / np.maximum(total, 1)


def expert_load_report(load: dict[str, list[list[int]]]) -> dict[str, Any]:
    """`load`: modality → layer → tokens per expert; a modality with no tokens is left out.
    Empty when nothing was routed."""
    per_modality = {
        m: np.asarray(layers, dtype=np.float64) for m, layers in load.items() if np.sum(layers)
    }
    if not per_modality:
        return {}
    together = sum(per_modality.values())  # (layers, E)
    experts = together.shape[1]
    ratio = shares(together) * experts
    return {
        "experts": experts,
        "tokens": {m: int(c.sum()) for m, c in per_modality.items()},
        "share": {m: shares(c).round(4).tolist() for m, c in per_modality.items()},
        "share_all": shares(together).round(4).tolist(),
        "max_over_mean": float(ratio.max()),
        "min_over_mean": float(ratio.min()),
    }
