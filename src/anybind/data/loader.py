"""DataLoaders over the datasets: decoding and collation in worker processes, bad samples
named or counted, dead workers reported, and the step-indexed batch order of training.

Every loader here wraps torch's `DataLoader`; the two pieces written by hand are the collator
(it separates undecodable samples from good ones, so the loop decides to stop or skip) and
`StepBatchSampler` (torch's samplers have no notion of "start at step k" for an exact resume,
nor of "the same global batches at any world size").
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from anybind.data.collate import collate
from anybind.data.dataset import LoadReport, MultiModalDataset
from anybind.data.lazy import BadSample, RecordDataset
from anybind.data.sample import Sample
from anybind.errors import DataError
from anybind.modalities import Modality
from anybind.progress import progress_bar

AnyDataset = MultiModalDataset | RecordDataset


@dataclass(frozen=True)
class LoaderSettings:
    workers: int = 0
    prefetch_factor: int = 2
    persistent_workers: bool = False
    pin_memory: bool = False
    timeout_s: float = 0.0

    @classmethod
    def from_config(cls, data: Any, device: torch.device | None = None) -> LoaderSettings:
        """From a `DataConfig`; pinned memory only where there is a GPU to copy to."""
        return cls(
            workers=data.workers,
            prefetch_factor=data.prefetch_factor,
            persistent_workers=data.persistent_workers,
            pin_memory=data.pin_memory and device is not None and device.type == "cuda",
            timeout_s=data.worker_timeout_s,
        )


class _Indexed(Dataset):
    """(index, item): the collator learns which dataset rows a batch holds."""

    def __init__(self, dataset: AnyDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> tuple[int, Sample | BadSample]:
        return index, self.dataset[index]


class Collator:
    """Good samples → a batch (see `collate`), plus `batch["index"]` (their dataset rows) and
    `batch["bad"]` (the `BadSample`s of the batch, in row order)."""

    def __init__(self, modalities: dict[str, Modality], keep: Sequence[str] = ()):
        self.modalities = modalities
        self.keep = tuple(keep)

    def __call__(self, items: list[tuple[int, Sample | BadSample]]) -> dict[str, Any]:
        good = [(i, s) for i, s in items if isinstance(s, Sample)]
        batch = collate([s for _, s in good], self.modalities, self.keep)
        batch["index"] = torch.tensor([i for i, _ in good], dtype=torch.long)
        batch["bad"] = [s for _, s in items if isinstance(s, BadSample)]
        # the small per-row tensors travel from a worker as numpy arrays: a tensor costs a
        # shared-memory segment each (about 12% of the throughput of 64×64 image batches)
        return {k: v.numpy() if _small(k, v) else v for k, v in batch.items()}


def _small(key: str, value: Any) -> bool:
    return isinstance(value, torch.Tensor) and (key in ("index", "label") or key.endswith("_mask"))


def tensors(batch: dict[str, Any]) -> dict[str, Any]:
    """A batch from a `Collator` with its per-row arrays as tensors again."""
    return {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in batch.items()}


class StepBatchSampler(Sampler[list[int]]):
    """The batches of steps `start` … `stop - 1`, as dataset rows of this rank.

    Epoch e's order is `randperm(n)` seeded by (seed, e); step s takes batch `s mod per_epoch`
    of epoch `s // per_epoch` (the remainder of an epoch is not used). A rank keeps its
    contiguous chunk of every global batch (`tensor_split` over the world), so the ranks read
    disjoint rows and the global batches are the same at any world size.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
    ):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.per_epoch = max(1, n // batch_size)

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    def epoch_order(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 7919 + epoch)
        return torch.randperm(self.n, generator=generator)

    def global_batch(self, step: int) -> torch.Tensor:
        epoch, within = divmod(step, self.per_epoch)
        order = self.epoch_order(epoch)
        return order[within * self.batch_size : (within + 1) * self.batch_size]

    def __iter__(self) -> Iterator[list[int]]:
        cached: tuple[int, torch.Tensor] | None = None
        for step in range(self.start, self.stop):
            epoch, within = divmod(step, self.per_epoch)
            if cached is None or cached[0] != epoch:
                cached = (epoch, self.epoch_order(epoch))
            rows = cached[1][within * self.batch_size : (within + 1) * self.batch_size]
            yield rows.tensor_split(self.world)[self.rank].tolist()


def make_loader(
    dataset: AnyDataset,
    batch_sampler: Sampler[list[int]] | Sequence[list[int]],
    settings: LoaderSettings,
    *,
    keep: Sequence[str] = (),
    collate_fn: Any = None,
) -> DataLoader:
    workers = settings.workers
    return DataLoader(
        _Indexed(dataset),
        batch_sampler=batch_sampler,
        collate_fn=collate_fn or Collator(dataset.modalities, keep),
        num_workers=workers,
        pin_memory=settings.pin_memory,
        prefetch_factor=settings.prefetch_factor if workers else None,
        persistent_workers=settings.persistent_workers and workers > 0,
        timeout=settings.timeout_s if workers else 0,
        # the workers' seeds come from here, not from (and not changing) the global torch RNG
        generator=torch.Generator().manual_seed(0),
    )


def batches(loader: DataLoader) -> Iterator[dict[str, Any]]:
    """Iterate a loader; a worker that died or timed out is reported as one clear error."""
    iterator = iter(loader)
    while True:
        try:
            batch = next(iterator)
        except StopIteration:
            return
        except RuntimeError as exc:
            text = str(exc)
            if "DataLoader worker" in text or "DataLoader timed out" in text:
                raise DataError(
                    f"a data-loading worker failed ({text.splitlines()[0]}); rerun with "
                    "data.workers=0 to decode in the main process and see the cause"
                ) from None
            raise
        yield tensors(batch) if isinstance(batch, dict) else batch


def _items(items: list[tuple[int, Sample | BadSample]]) -> list[tuple[int, Sample | BadSample]]:
    return items


def materialize(
    lazy: RecordDataset,
    *,
    skip_bad: bool = False,
    workers: int = 0,
    progress: bool = True,
    description: str = "loading",
    chunk: int = 64,
) -> tuple[MultiModalDataset, LoadReport]:
    """Decode every record of `lazy` (in `workers` processes) into an in-memory dataset; a bad
    record stops it with its file and row, or with `skip_bad` is dropped and counted."""
    report = LoadReport()
    samples: list[Sample] = []
    chunks = list(BatchSampler(range(len(lazy)), chunk, drop_last=False))
    loader = make_loader(lazy, chunks, LoaderSettings(workers=workers), collate_fn=_items)
    with progress_bar("samples", disable=not progress) as bar:
        task = bar.add_task(description, total=len(lazy))
        for items in batches(loader):
            for _, item in items:
                if isinstance(item, Sample):
                    samples.append(item)
                    continue
                if not skip_bad:
                    raise item.error()
                report.skipped += 1
                if len(report.reasons) < 20:
                    report.reasons.append(item.message)
            bar.advance(task, len(items))
    report.loaded = len(samples)
    if not samples:
        raise DataError(
            f"no usable samples ({report.skipped} skipped)"
            + (f"; first: {report.reasons[0]}" if report.reasons else "")
        )
    return MultiModalDataset(samples, lazy.modalities, lazy.class_names), report
