"""Dynamic batching: concurrent requests for one modality share one forward pass and one index
search per target.

Each request puts its raw inputs (and, for a search, its targets and k) on its modality's queue
and awaits a future. One task per modality takes the first waiting request, keeps collecting for
`window_s` (or until `max_batch` inputs), then in a worker thread decodes every input, runs the
tower once on all of them, searches each target index once for the whole batch (at the largest
k asked), and hands each request its rows (text-embeddings-inference's scheme, in asyncio). A
bad input fails only its own request: inputs are decoded one by one before the forward pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anybind.errors import AnybindError


@dataclass
class Job:
    inputs: list[Any]
    targets: tuple[str, ...] = ()  # empty: embed only
    k: int = 0
    future: asyncio.Future | None = None
    decoded: list[Any] | None = None
    error: AnybindError | None = None


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class Batcher:
    """`decode(modality, raw)`, `embed(modality, decoded) -> (n, D)`,
    `search(vectors, target, k) -> per-row hit lists`."""

    embed: Callable[[str, list[Any]], np.ndarray]
    decode: Callable[[str, Any], Any]
    search: Callable[[np.ndarray, str, int], list[list[Any]]] | None = None
    window_s: float = 0.005
    max_batch: int = 64
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
            self._tasks.append(asyncio.create_task(self._run(modality)))
        job = Job(inputs, targets, k, loop.create_future())
        await self._queues[modality].put(job)
        return await job.future

    async def _run(self, modality: str) -> None:
        queue = self._queues[modality]
        loop = asyncio.get_running_loop()
        while True:
            group = [await queue.get()]
            deadline = time.perf_counter() + self.window_s
            size = len(group[0].inputs)
            while size < self.max_batch:
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                try:
                    item = await asyncio.wait_for(queue.get(), left)
                except TimeoutError:
                    break
                group.append(item)
                size += len(item.inputs)
            try:
                results = await loop.run_in_executor(None, self._process, modality, group)
            except AnybindError as exc:  # the whole batch failed: every request hears why
                results = [exc] * len(group)
            for job, result in zip(group, results, strict=True):
                if job.future is not None and not job.future.done():
                    if isinstance(result, Exception):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)

    def _process(self, modality: str, group: list[Job]) -> list[Any]:
        """In a worker thread: decode, one forward pass, one search per target."""
        for job in group:
            try:
                job.decoded = [self.decode(modality, x) for x in job.inputs]
            except AnybindError as exc:
                job.error = exc
        good = [job for job in group if job.error is None]
        if good:
            vectors = self.embed(modality, [x for job in good for x in job.decoded or []])
            self.stats.batches += 1
            self.stats.items += len(vectors)
            self.stats.largest = max(self.stats.largest, len(vectors))
            hits = self._search_all(vectors, good)
        start, out = 0, {}
        for job in good:
            rows = slice(start, start + len(job.inputs))
            start += len(job.inputs)
            if not job.targets:
                out[id(job)] = vectors[rows]
            else:
                out[id(job)] = [
                    {t: hits[t][i][: job.k] for t in job.targets}
                    for i in range(rows.start, rows.stop)
                ]
        return [job.error if job.error is not None else out[id(job)] for job in group]

    def _search_all(self, vectors: np.ndarray, jobs: list[Job]) -> dict[str, list[list[Any]]]:
        if self.search is None or not any(job.targets for job in jobs):
            return {}
        targets = dict.fromkeys(t for job in jobs for t in job.targets)
        k = max(job.k for job in jobs if job.targets)
        return {t: self.search(vectors, t, k) for t in targets}

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
