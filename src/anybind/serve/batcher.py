"""Dynamic batching: concurrent requests for one modality share one forward pass.

Each request puts its inputs on its modality's queue and awaits a future. One task per
modality takes the first waiting request, keeps collecting for `window_s` (or until `max_batch`
inputs), then runs the tower once on all of them in a worker thread and hands each request its
rows (text-embeddings-inference's scheme, in asyncio). A bad input fails only its own request:
the batch is decoded item by item before the forward pass.
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
class _Pending:
    inputs: list[Any]
    future: asyncio.Future


@dataclass
class BatchStats:
    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass
class Batcher:
    """`embed(modality, decoded inputs) -> (n, D)`, `decode(modality, raw) -> decoded`."""

    embed: Callable[[str, list[Any]], np.ndarray]
    decode: Callable[[str, Any], Any]
    window_s: float = 0.005
    max_batch: int = 64
    stats: BatchStats = field(default_factory=BatchStats)
    _queues: dict[str, asyncio.Queue] = field(default_factory=dict)
    _tasks: list[asyncio.Task] = field(default_factory=list)

    async def submit(self, modality: str, inputs: list[Any]) -> np.ndarray:
        """The embeddings of `inputs` (raw values of `modality`), computed with whatever other
        requests arrive within the window."""
        loop = asyncio.get_running_loop()
        decoded = await loop.run_in_executor(None, self._decode_all, modality, inputs)
        if modality not in self._queues:
            self._queues[modality] = asyncio.Queue()
            self._tasks.append(asyncio.create_task(self._run(modality)))
        future = loop.create_future()
        await self._queues[modality].put(_Pending(decoded, future))
        return await future

    def _decode_all(self, modality: str, inputs: list[Any]) -> list[Any]:
        return [self.decode(modality, x) for x in inputs]

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
            inputs = [x for p in group for x in p.inputs]
            try:
                vectors = await loop.run_in_executor(None, self.embed, modality, inputs)
            except AnybindError as exc:  # the whole batch failed: every request hears why
                for p in group:
                    if not p.future.done():
                        p.future.set_exception(exc)
                continue
            self.stats.batches += 1
            self.stats.items += len(inputs)
            self.stats.largest = max(self.stats.largest, len(inputs))
            start = 0
            for p in group:
                if not p.future.done():
                    p.future.set_result(vectors[start : start + len(p.inputs)])
                start += len(p.inputs)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        self._queues.clear()
