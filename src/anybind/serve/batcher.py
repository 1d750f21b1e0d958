"""Dynamic batching: concurrent requests for one modality share one forward pass and one index
search per target.

Each request puts its raw inputs (and, for a search, its targets and k) on its modality's queue
and awaits a future. One task per modality takes the first waiting request, waits `window_s`
for others, takes what is queued (up to `max_batch` inputs) and hands the batch to the model's
threads. There it decodes every input, runs the tower once on all of them, searches each target
index once for the whole batch (at the largest k asked) and gives each request its rows
(text-embeddings-inference's scheme, in asyncio). Up to `workers + spare` batches are in flight,
and what is queued is shared among the batches that can start: one batch of every waiting
request would leave the other workers idle until it was answered. A single worker wants a spare
batch gathered while it computes; with several, the others compute while one's batch is answered
and the next one gathered, and a spare would only make every batch smaller. A bad input fails
only its own request: inputs are decoded one by one before the forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol

import numpy as np

from anybind.errors import AnybindError


@dataclass(frozen=True)
class Work:
    """What one request asks."""

    inputs: list[Any]
    targets: tuple[str, ...] = ()  # empty: embed only
    k: int = 0


class Model(Protocol):
    def decode(self, modality: str, raw: Any) -> Any: ...
    def embed_decoded(self, modality: str, decoded: list[Any]) -> np.ndarray: ...
    def search(self, queries: np.ndarray, to: str, k: int) -> list[list[Any]]: ...


def run_group(model: Model, modality: str, works: list[Work]) -> list[Any]:
    """Per request: its embeddings, or for each input a dict target → its k hits, or the
    AnybindError that its inputs raised. One forward pass and one search per target."""
    decoded: list[list[Any]] = []
    errors: dict[int, AnybindError] = {}
    for i, work in enumerate(works):
        try:
            decoded.append([model.decode(modality, x) for x in work.inputs])
        except AnybindError as exc:
            errors[i] = exc
            decoded.append([])
    flat = [x for d in decoded for x in d]
    if not flat:
        return [errors[i] for i in range(len(works))]
    vectors = model.embed_decoded(modality, flat)
    searched = [w for i, w in enumerate(works) if i not in errors and w.targets]
    hits: dict[str, list[list[Any]]] = {}
    if searched:
        k = max(w.k for w in searched)
        for target in dict.fromkeys(t for w in searched for t in w.targets):
            hits[target] = model.search(vectors, target, k)
    out: list[Any] = []
    start = 0
    for i, work in enumerate(works):
        if i in errors:
            out.append(errors[i])
            continue
        rows = range(start, start + len(work.inputs))
        start += len(work.inputs)
        if not work.targets:
            out.append(vectors[rows.start : rows.stop])
        else:
            out.append([{t: hits[t][r][: work.k] for t in work.targets} for r in rows])
    return out


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class Batcher:
    """`run(modality, works) -> per-work results`, run on `executor`, which has `workers`
    threads; `spare` more batches are gathered while they compute."""

    run: Callable[[str, list[Work]], list[Any]]
    executor: Executor
    window_s: float = 0.005
    max_batch: int = 64
    workers: int = 1
    spare: int = 1
    stats: BatchStats = field(default_factory=BatchStats)
    _queues: dict[str, asyncio.Queue] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def submit(
        self, modality: str, inputs: list[Any], targets: tuple[str, ...] = (), k: int = 0
    ) -> Any:
        """The embeddings of `inputs` (raw values of `modality`), or with `targets`, for each
        input a dict target → its k hits; computed with whatever other requests arrive within
        the window."""
        loop = asyncio.get_running_loop()
        if modality not in self._queues:
            self._queues[modality] = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._gather(modality)))
        future = loop.create_future()
        await self._queues[modality].put((Work(inputs, targets, k), future))
        return await future

    async def _gather(self, modality: str) -> None:
        queue = self._queues[modality]
        loop = asyncio.get_running_loop()
        slots = self.workers + self.spare
        in_flight = asyncio.Semaphore(slots)
        busy = 0

        def finished(group: list[tuple[Work, asyncio.Future]], done: asyncio.Future) -> None:
            nonlocal busy
            busy -= 1
            in_flight.release()
            _deliver(group, done)

        while True:
            await in_flight.acquire()
            group = [await queue.get()]
            if self.window_s > 0:
                await asyncio.sleep(self.window_s)  # let concurrent requests arrive
            share = -(-(queue.qsize() + 1) // (slots - busy))  # this batch's part of the queue
            size = len(group[0][0].inputs)
            while size < self.max_batch and len(group) < share and not queue.empty():
                group.append(queue.get_nowait())
                size += len(group[-1][0].inputs)
            self.stats.batches += 1
            self.stats.items += size
            self.stats.largest = max(self.stats.largest, size)
            works = [work for work, _ in group]
            busy += 1
            done = loop.run_in_executor(self.executor, self.run, modality, works)
            done.add_done_callback(partial(finished, group))

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
        self.executor.shutdown(wait=True, cancel_futures=True)


def _deliver(group: list[tuple[Work, asyncio.Future]], done: asyncio.Future) -> None:
    """Each request of a finished batch hears its own result, or why the batch failed."""
    if done.cancelled():
        return
    exc = done.exception()
    results = [exc] * len(group) if exc is not None else done.result()
    for (_, future), result in zip(group, results, strict=True):
        if future.done():
            continue
        if isinstance(result, BaseException):
            future.set_exception(result)
        else:
            future.set_result(result)
