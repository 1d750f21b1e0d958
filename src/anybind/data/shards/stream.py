"""Reading shards back: `ShardStream` for training, `ShardReader` for one ordered pass.

Training (`ShardStream`, an IterableDataset run in each DataLoader worker). Step s of the run is
made by worker `s mod W` (the DataLoader takes batches from its workers in turn). Within epoch
e, the shard list is shuffled with seed (seed, e), identically on every rank; rank r takes every
world-th shard from r, and within it stream k (k = 0 … W-1) every W-th shard from k. Stream
(e, k) reads its shards in that order (again from the start if it runs out, as a sample budget
does), passes the raw bytes through a shuffle buffer seeded by (seed, e, r, k), and cuts
batches of this rank's share of the global batch; only then are they decoded. An epoch has a
fixed number of steps (`samples_per_epoch // batch_size`), the same on every rank. Every batch
is a pure function of (seed, step, rank, world, workers), so a resumed run re-opens the stream
of its step and skips, without decoding, the batches it had already taken: an exact mid-epoch
resume, for the same world size and number of workers.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from anybind.data.captions import add_captions
from anybind.data.dataset import LoadReport, MultiModalDataset
from anybind.data.lazy import BadSample
from anybind.data.loader import Collator, LoaderSettings, batches
from anybind.data.record import load_record
from anybind.data.sample import RawRecord, Sample
from anybind.errors import DataError
from anybind.modalities import EncodedFile, Modality
from anybind.progress import progress_bar


@dataclass
class ShardSet:
    """The shards of the configured sources, and how to read them."""

    urls: list[str]
    modalities: dict[str, Modality]
    class_names: list[str] | None
    captions: dict[str, list[str]] = field(default_factory=dict)
    samples: int = 0  # samples in the shards (from the index)
    samples_per_epoch: int = 0
    shuffle_buffer: int = 2000

    def __len__(self) -> int:
        return self.samples_per_epoch

    def raw(self, urls: Sequence[str]) -> Iterator[RawSample]:
        """(members, shard, row) of every sample of `urls`, in order, undecoded; a shard that
        cannot be read is named."""
        import webdataset as wds

        for url in urls:
            samples = wds.tariterators.tarfile_samples([{"url": url}])
            row = 0
            try:
                for sample in samples:
                    row += 1
                    yield sample, url, row
            except Exception as exc:  # tarfile and the URL opener raise many error types
                raise DataError(
                    f"cannot read the shard after {row} samples: {exc}", path=url
                ) from None

    def records(self, urls: Sequence[str]) -> Iterator[RawRecord]:
        for sample, url, row in self.raw(urls):
            yield to_record(sample, url, row, self)

    def decode(self, record: RawRecord) -> Sample | BadSample:
        if record.values.get("__bad__"):
            return BadSample(-1, record.values["__bad__"], record.path, record.row)
        add_caption(record, self)
        try:
            return load_record(record, self.modalities, self.class_names)
        except DataError as exc:
            return BadSample(-1, exc.detail, exc.path, exc.row)


#: a sample as read from a tar: its members by suffix, its shard, its place in the shard
RawSample = tuple[dict[str, Any], str, int]


def to_record(sample: dict[str, Any], url: str, row: int, shards: ShardSet) -> RawRecord:
    key = sample.get("__key__", str(row))
    values: dict[str, Any] = {}
    meta: dict[str, Any] = {}
    for member, data in sample.items():
        if member.startswith("__"):
            continue
        if member == "json":
            try:
                meta = json.loads(data)
                assert isinstance(meta, dict)
            except (ValueError, AssertionError):
                values = {"__bad__": f"sample {key}: its json member is not a JSON object"}
                break
            continue
        modality = member.split(".", 1)[0]
        if modality in shards.modalities:  # modalities the config does not use are ignored
            values[modality] = EncodedFile(bytes(data), f"{key}.{member}")
    return RawRecord(values, meta.get("label"), str(meta.get("id", key)), path=url, row=row)


def add_caption(record: RawRecord, shards: ShardSet) -> None:
    if shards.captions and "text" in shards.modalities:
        add_captions([record], shards.captions, shards.class_names)


def rank_batch_size(batch_size: int, rank: int, world: int) -> int:
    return len(torch.arange(batch_size).tensor_split(world)[rank])


class ShardStream(IterableDataset):
    """The training batches of steps start … stop-1 for one rank (see the module docstring)."""

    def __init__(
        self,
        shards: ShardSet,
        *,
        batch_size: int,
        seed: int,
        start: int,
        stop: int,
        rank: int = 0,
        world: int = 1,
        keep: Sequence[str] = (),
    ):
        self.shards, self.batch_size, self.seed = shards, batch_size, seed
        self.start, self.stop, self.rank, self.world = start, stop, rank, world
        self.per_epoch = max(1, shards.samples_per_epoch // batch_size)
        self.local = rank_batch_size(batch_size, rank, world)
        self.collate = Collator(shards.modalities, keep)

    def epoch_urls(self, epoch: int) -> list[str]:
        urls = list(self.shards.urls)
        random.Random(f"{self.seed}/{epoch}").shuffle(urls)  # the same on every rank
        return urls[self.rank :: self.world]

    def raw_batches(self, epoch: int, stream: int, streams: int) -> Iterator[list[RawSample]]:
        urls = self.epoch_urls(epoch)[stream::streams]
        if not urls:
            raise DataError(
                f"{len(self.shards.urls)} shards cannot feed {self.world} ranks × {streams} "
                "workers: write smaller shards (anybind shard --samples-per-shard) or use "
                "fewer data.workers"
            )
        rng = random.Random(f"{self.seed}/{epoch}/{self.rank}/{stream}")
        batch: list[RawSample] = []
        while True:  # a sample budget: the stream's shards again if it runs out
            for record in self.shuffled(self.shards.raw(urls), rng):
                batch.append(record)
                if len(batch) == self.local:
                    yield batch
                    batch = []

    def shuffled(self, records: Iterator[RawSample], rng: random.Random) -> Iterator[RawSample]:
        """A shuffle buffer over raw samples, drained at the end: each sample once."""
        buffer: list[RawSample] = []

        def take() -> RawSample:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            return buffer.pop()

        for record in records:
            buffer.append(record)
            if len(buffer) > self.shards.shuffle_buffer:
                yield take()
        while buffer:
            yield take()

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        current: tuple[tuple[int, int], Iterator[list[RawSample]]] | None = None
        for step in range(self.start + worker, self.stop, workers):
            epoch, within = divmod(step, self.per_epoch)
            key = (epoch, within % workers)
            if current is None or current[0] != key:
                stream = self.raw_batches(epoch, key[1], workers)
                for _ in range(within // workers):  # resumed mid-epoch: skip, do not decode
                    next(stream)
                current = (key, stream)
            batch = next(current[1])
            records = [to_record(*raw, self.shards) for raw in batch]
            yield self.collate([(-1, self.shards.decode(r)) for r in records])


class ShardReader(IterableDataset):
    """One ordered pass over every sample (evaluation, checks, loading into memory): worker w
    reads shards w, w+W, …; batches of up to `batch_size` collated samples."""

    def __init__(self, shards: ShardSet, batch_size: int, *, collate: bool = True):
        self.shards, self.batch_size = shards, batch_size
        self.collate = Collator(shards.modalities) if collate else _items

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        batch: list[tuple[int, Sample | BadSample]] = []
        for record in self.shards.records(self.shards.urls[worker::workers]):
            batch.append((-1, self.shards.decode(record)))
            if len(batch) == self.batch_size:
                yield self.collate(batch)
                batch = []
        if batch:
            yield self.collate(batch)


def _items(items: list[tuple[int, Sample | BadSample]]) -> list[tuple[int, Sample | BadSample]]:
    return items


def as_collated(batch: Any) -> Any:
    """The `collate_fn` of loaders whose dataset yields whole collated batches."""
    return batch


def reader_loader(shards: ShardSet, batch_size: int, workers: int, *, collate: bool = True):
    """A DataLoader over one ordered pass; never more workers than shards."""
    return DataLoader(
        ShardReader(shards, batch_size, collate=collate),
        batch_size=None,
        collate_fn=as_collated,
        num_workers=min(workers, len(shards.urls)),
    )


def materialize_stream(
    shards: ShardSet, *, skip_bad: bool = False, workers: int = 0, progress: bool = True
) -> tuple[MultiModalDataset, LoadReport]:
    """Every sample of the shards decoded into memory (adaptation's few-shot sets)."""
    report = LoadReport()
    samples: list[Sample] = []
    with progress_bar("samples", disable=not progress) as bar:
        task = bar.add_task("loading shards", total=shards.samples)
        for items in batches(reader_loader(shards, 64, workers, collate=False)):
            for _, item in items:
                if isinstance(item, Sample):
                    samples.append(item)
                elif not skip_bad:
                    raise item.error()
                else:
                    report.skipped += 1
                    if len(report.reasons) < 20:
                        report.reasons.append(item.message)
            bar.advance(task, len(items))
    if not samples:
        raise DataError(f"no usable samples in the shards ({report.skipped} skipped)")
    report.loaded = len(samples)
    return MultiModalDataset(samples, shards.modalities, shards.class_names), report


def stream_loader(stream: ShardStream, settings: LoaderSettings) -> DataLoader:
    """The DataLoader of a training stream: whole batches from `settings.workers` workers."""
    workers = settings.workers
    return DataLoader(
        stream,
        batch_size=None,
        collate_fn=as_collated,  # not default_convert: it walks every id and caption again
        num_workers=workers,
        pin_memory=settings.pin_memory,
        prefetch_factor=settings.prefetch_factor if workers else None,
        persistent_workers=settings.persistent_workers and workers > 0,
        timeout=settings.timeout_s if workers else 0,
    )
