"""The step sampler: each epoch is one seeded permutation of the rows, cut into batches; a
resumed run draws the same batches; ranks split each global batch."""

from __future__ import annotations

import pytest
import torch

from anybind.data.loader import StepBatchSampler


def _epochs(sampler: StepBatchSampler) -> list[list[int]]:
    """The rows drawn in each epoch, in order."""
    rows: list[list[int]] = []
    for step, batch in zip(range(sampler.start, sampler.stop), sampler, strict=True):
        epoch = step // sampler.per_epoch
        while len(rows) <= epoch:
            rows.append([])
        rows[epoch] += batch
    return rows


@pytest.mark.parametrize(("n", "batch_size"), [(24, 4), (25, 4), (7, 7)])
def test_every_epoch_is_one_permutation_seeded_by_the_epoch(n: int, batch_size: int) -> None:
    sampler = StepBatchSampler(n, batch_size, seed=3, start=0, stop=4 * (n // batch_size))
    epochs = _epochs(sampler)
    assert len(epochs) == 4
    for epoch, rows in enumerate(epochs):
        used = (n // batch_size) * batch_size
        assert len(rows) == len(set(rows)) == used  # no row twice in an epoch
        generator = torch.Generator().manual_seed(3 * 7919 + epoch)
        assert rows == torch.randperm(n, generator=generator)[:used].tolist()
    if n > 1:
        assert epochs[0] != epochs[1]  # the order changes with the epoch


def test_the_seed_changes_the_order_and_fixes_it() -> None:
    a = list(StepBatchSampler(30, 5, seed=0, start=0, stop=6))
    assert a == list(StepBatchSampler(30, 5, seed=0, start=0, stop=6))
    assert a != list(StepBatchSampler(30, 5, seed=1, start=0, stop=6))


def test_a_resumed_sampler_draws_the_tail_of_the_full_run() -> None:
    full = list(StepBatchSampler(30, 4, seed=2, start=0, stop=20))
    assert list(StepBatchSampler(30, 4, seed=2, start=9, stop=20)) == full[9:]


def test_the_ranks_split_each_global_batch_into_disjoint_chunks() -> None:
    whole = list(StepBatchSampler(30, 6, seed=0, start=0, stop=8))
    ranks = [list(StepBatchSampler(30, 6, 0, 0, 8, rank=r, world=3)) for r in range(3)]
    for step, batch in enumerate(whole):
        chunks = [ranks[r][step] for r in range(3)]
        assert sum(chunks, []) == batch and all(len(c) == 2 for c in chunks)
