"""The optimisation loop every adaptation method shares: for each batch, set the learning rate
from the schedule, take the method's loss, step. Methods differ only in what a batch is and
what its loss is."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TypeVar

import torch

from anybind.schedules import cosine

B = TypeVar("B")


def set_lr_factor(optimizer: torch.optim.Optimizer, factor: float) -> None:
    """Each group's learning rate = its rate at the first call × `factor`."""
    for group in optimizer.param_groups:
        group["lr"] = group.setdefault("base_lr", group["lr"]) * factor


def fit(
    optimizer: torch.optim.Optimizer,
    batches: Iterable[B],
    loss_of: Callable[[B], torch.Tensor],
    *,
    schedule: Callable[[int], float] | None = None,
    after_step: Callable[[B], None] | None = None,
) -> list[float]:
    """One optimiser step per batch; the losses, in order. `schedule(i)` is the learning-rate
    factor of the i-th step (constant rate when None); `after_step(batch)` runs after each
    step (a progress bar)."""
    losses = []
    for i, batch in enumerate(batches):
        if schedule is not None:
            set_lr_factor(optimizer, schedule(i))
        loss = loss_of(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
        if after_step is not None:
            after_step(batch)
    return losses


def cosine_over(total: int) -> Callable[[int], float]:
    """The cosine schedule over `total` steps (anybind.schedules.cosine)."""
    return lambda step: cosine(step, total)


def shuffled_batches(
    n: int, batch_size: int, generator: torch.Generator, *, min_size: int = 1
) -> list[torch.Tensor]:
    """One epoch of index batches in a seeded order; batches smaller than `min_size` dropped."""
    order = torch.randperm(n, generator=generator)
    batches = [order[start : start + batch_size] for start in range(0, n, batch_size)]
    return [b for b in batches if len(b) >= min_size]
