"""The dynamic batcher on a fake model: one batch computes while the next one gathers, each
request gets its own rows, a bad input fails only its request, and a batch that raises does
not stop the service."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from anybind.errors import AnybindError
from anybind.serve.batcher import Batcher, Work, run_group


class FakeModel:
    """Embeds a string as [len, first char code]; 'bad' does not decode."""

    def __init__(self) -> None:
        self.forward_sizes: list[int] = []

    def decode(self, modality: str, raw: Any) -> Any:
        if raw == "bad":
            raise AnybindError("the query 'bad' does not decode")
        return raw

    def embed_decoded(self, modality: str, decoded: list[Any]) -> np.ndarray:
        self.forward_sizes.append(len(decoded))
        return np.array([[len(x), ord(x[0])] for x in decoded], dtype=np.float32)

    def search(self, queries: np.ndarray, to: str, k: int) -> list[list[Any]]:
        return [[f"{to}:{int(q[1])}:{i}" for i in range(k)] for q in queries]


def test_each_request_gets_its_own_rows_and_a_bad_input_fails_only_its_request() -> None:
    model = FakeModel()
    works = [Work(["ab", "c"]), Work(["bad"]), Work(["xyz"], ("image", "audio"), 2), Work(["q"])]
    out = run_group(model, "text", works)
    assert model.forward_sizes == [4]  # one forward pass for every good input
    np.testing.assert_array_equal(out[0], [[2, 97], [1, 99]])
    assert isinstance(out[1], AnybindError) and "bad" in str(out[1])
    hits = {t: [f"{t}:120:0", f"{t}:120:1"] for t in ("image", "audio")}  # 'x' is 120
    assert out[2] == [hits]
    np.testing.assert_array_equal(out[3], [[1, 113]])


def test_the_next_batch_gathers_while_one_computes_and_a_failed_batch_does_not_stop_it() -> None:
    release = threading.Event()
    calls: list[list[str]] = []

    def run(modality: str, works: list[Work]) -> list[Any]:
        calls.append([x for w in works for x in w.inputs])
        if len(calls) == 1:  # the first batch blocks until the others have queued
            release.wait(10)
            raise RuntimeError("the forward pass broke")
        return [np.zeros((len(w.inputs), 2)) for w in works]

    async def scenario() -> list[Any]:
        batcher = Batcher(run, ThreadPoolExecutor(1), window_s=0.0, max_batch=64)
        first = asyncio.create_task(batcher.submit("text", ["a"]))
        while not calls:  # the first batch is computing
            await asyncio.sleep(0)
        rest = [asyncio.create_task(batcher.submit("text", [t])) for t in ("b", "c", "d")]
        for _ in range(20):
            await asyncio.sleep(0)  # let them queue behind the computing batch
        release.set()
        results = await asyncio.wait_for(asyncio.gather(first, *rest, return_exceptions=True), 10)
        after = await asyncio.wait_for(batcher.submit("text", ["e"]), 10)  # it keeps serving
        await batcher.close()
        return [*results, after, batcher.stats]

    *results, after, stats = asyncio.run(scenario())
    assert isinstance(results[0], RuntimeError)
    assert all(r.shape == (1, 2) for r in results[1:]) and after.shape == (1, 2)
    assert calls == [["a"], ["b", "c", "d"], ["e"]]  # b, c, d share one forward pass
    assert (stats.batches, stats.items, stats.largest) == (3, 5, 3)


def test_run_group_with_every_input_bad_runs_no_forward_pass() -> None:
    model = FakeModel()
    out = run_group(model, "text", [Work(["bad"]), Work(["bad"])])
    assert model.forward_sizes == [] and all(isinstance(o, AnybindError) for o in out)


def test_waiting_requests_are_shared_among_the_workers_that_can_start() -> None:
    """Two workers and four queued requests: two batches of two compute at once (the barrier
    lets neither finish alone); one worker with a spare batch splits them the same way but
    computes the halves one after the other."""

    def scenario(workers: int, spare: int) -> list[list[str]]:
        calls: list[list[str]] = []
        together = threading.Barrier(workers, timeout=10)

        def run(modality: str, works: list[Work]) -> list[Any]:
            calls.append([x for w in works for x in w.inputs])
            together.wait()
            return [np.zeros((len(w.inputs), 2)) for w in works]

        async def go() -> None:
            batcher = Batcher(run, ThreadPoolExecutor(workers), 0.0, 64, workers, spare)
            queued = [asyncio.create_task(batcher.submit("text", [t])) for t in "abcd"]
            await asyncio.wait_for(asyncio.gather(*queued), 10)
            await batcher.close()

        asyncio.run(go())
        return sorted(calls)

    assert scenario(workers=2, spare=0) == [["a", "b"], ["c", "d"]]
    assert scenario(workers=1, spare=1) == [["a", "b"], ["c", "d"]]
