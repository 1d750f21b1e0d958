"""Learning-rate schedules as factors of the base rate, shared by training and adaptation."""

from __future__ import annotations

import math
from collections.abc import Callable


def cosine(step: int, total: int) -> float:
    """Cosine decay from 1 at step 0 towards 0 at `total` (SGDR without restarts)."""
    return 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, total))))


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """LR factor at a step: linear warmup over `warmup` steps, then cosine decay to 0 at
    `total`."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return cosine(step - warmup, total - warmup)

    return factor
