"""The data path: the step-indexed batch order, lazy decoding in workers, bad samples named or
counted, dead workers reported, and the on-disk feature cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anybind.data.lazy import BadSample, RecordDataset
from anybind.data.loader import LoaderSettings, StepBatchSampler, batches, make_loader, materialize
from anybind.data.sample import RawRecord
from anybind.errors import DataError
from anybind.feature_cache import FeatureCache
from anybind.modalities import build_modality


def test_every_epoch_is_a_permutation_seeded_by_the_epoch():
    n, batch = 103, 10  # 10 full batches per epoch, 3 rows of remainder
    sampler = StepBatchSampler(n, batch, seed=5, start=0, stop=30)
    steps = list(sampler)
    assert len(steps) == 30 and all(len(s) == batch for s in steps)
    epochs = [sum(steps[e * 10 : (e + 1) * 10], []) for e in range(3)]
    for rows in epochs:
        assert len(set(rows)) == 100  # no row twice within an epoch, only the remainder unused
    assert epochs[0] != epochs[1] != epochs[2]
    # the order is a function of (seed, epoch): the same generator gives the same permutation
    expected = torch.randperm(n, generator=torch.Generator().manual_seed(5 * 7919 + 1))
    assert epochs[1] == expected[:100].tolist()
    assert list(StepBatchSampler(n, batch, seed=6, start=0, stop=10)) != steps[:10]


def test_a_resumed_sampler_continues_at_the_step():
    full = list(StepBatchSampler(50, 8, seed=0, start=0, stop=20))
    assert list(StepBatchSampler(50, 8, seed=0, start=13, stop=20)) == full[13:]


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_read_disjoint_rows_that_make_up_the_global_batch(world):
    one = list(StepBatchSampler(64, 13, seed=1, start=0, stop=9))
    ranks = [list(StepBatchSampler(64, 13, 1, 0, 9, rank=r, world=world)) for r in range(world)]
    for step, rows in enumerate(one):
        parts = [ranks[r][step] for r in range(world)]
        assert sum(parts, []) == rows  # contiguous chunks, in rank order
        assert len(set(sum(parts, []))) == 13


def _png_records(root: Path, n: int, bad: dict[int, str] | None = None) -> list[RawRecord]:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(n):
        path = root / f"{i}.png"
        if bad and i in bad:
            path.write_bytes(bad[i].encode())
        else:
            Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(path)
        records.append(
            RawRecord({"image": str(path), "text": f"t{i % 3}"}, label=i % 2, id=str(i),
                      path=str(root / "m.jsonl"), row=i + 1)
        )  # fmt: skip
    return records


def _dataset(records: list[RawRecord]) -> RecordDataset:
    modalities = {
        "image": build_modality("image", {"size": (8, 8)}),
        "text": build_modality("text"),
    }
    return RecordDataset(records, modalities, ["a", "b"])


@pytest.mark.parametrize("workers", [0, 2])
def test_lazy_batches_equal_the_in_memory_ones(tmp_path, workers):
    lazy = _dataset(_png_records(tmp_path, 20))
    memory, report = materialize(lazy, progress=False)
    assert report.loaded == 20 and report.skipped == 0
    sampler = list(StepBatchSampler(20, 6, seed=3, start=0, stop=7))
    settings = LoaderSettings(workers=workers)
    got = list(batches(make_loader(lazy, sampler, settings)))
    want = [memory.batch(rows) for rows in sampler]
    assert len(got) == len(want) == 7
    for g, w, rows in zip(got, want, sampler, strict=True):
        assert g["index"].tolist() == rows and g["bad"] == []
        torch.testing.assert_close(g["image"], w["image"], rtol=0, atol=0)
        assert g["text"] == w["text"] and g["label"].tolist() == w["label"].tolist()


def test_a_bad_file_comes_back_named_not_raised_in_the_worker(tmp_path):
    lazy = _dataset(_png_records(tmp_path, 8, bad={5: "not a png"}))
    got = list(batches(make_loader(lazy, [list(range(8))], LoaderSettings(workers=1))))
    (batch,) = got
    assert batch["index"].tolist() == [0, 1, 2, 3, 4, 6, 7]
    (bad,) = batch["bad"]
    assert isinstance(bad, BadSample) and bad.index == 5
    assert str(tmp_path / "5.png") in bad.message and "row 6" in bad.message
    with pytest.raises(DataError, match="row 6"):
        materialize(lazy, progress=False)
    dataset, report = materialize(lazy, skip_bad=True, progress=False, workers=2)
    assert len(dataset) == 7 and report.skipped == 1 and "row 6" in report.reasons[0]


class _DyingDataset(torch.utils.data.Dataset):
    """Row 3 takes its worker down, as a segfault in a decoder or the OOM killer would."""

    def __init__(self, inner: RecordDataset):
        self.inner, self.modalities = inner, inner.modalities

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, index: int):
        if index == 3:
            os._exit(3)
        return self.inner[index]


def test_a_worker_that_dies_is_reported_not_hung_on(tmp_path):
    dying = _DyingDataset(_dataset(_png_records(tmp_path, 8)))
    loader = make_loader(dying, [[0, 1], [2, 3], [4, 5]], LoaderSettings(workers=1))
    with pytest.raises(DataError, match="a data-loading worker failed"):
        list(batches(loader))


def test_the_feature_cache_computes_once_and_survives_a_torn_entry(tmp_path):
    calls = []

    def compute(x: np.ndarray) -> np.ndarray:
        calls.append(1)
        return np.stack([x.sum(keepdims=True), x.max(keepdims=True)])[:, 0] * 2.0

    data = np.arange(12, dtype=np.float32)
    cache = FeatureCache(tmp_path, "demo", {"k": 1})
    first = cache.get_or_compute(data, compute)
    again = FeatureCache(tmp_path, "demo", {"k": 1}).get_or_compute(data, compute)
    np.testing.assert_array_equal(first, [132.0, 22.0])
    np.testing.assert_array_equal(again, first)
    assert len(calls) == 1
    # other options are another key; a torn file is recomputed, not used
    FeatureCache(tmp_path, "demo", {"k": 2}).get_or_compute(data, compute)
    assert len(calls) == 2
    path = cache.path(cache.key(data))
    path.write_bytes(path.read_bytes()[:20])
    np.testing.assert_array_equal(cache.get_or_compute(data, compute), first)
    assert len(calls) == 3


def test_speech_embedding_features_come_from_the_cache_on_the_second_load(tmp_path):
    audio = build_modality("audio", {"sample_rate": 16000, "representation": "speech_embedding"})
    wave = np.sin(np.linspace(0, 900, 16000)).astype(np.float32) * 0.3
    direct = audio.load(wave)
    audio.use_feature_cache(str(tmp_path))
    cold = audio.load(wave)
    warm = audio.load(wave)
    cache = audio._feature_cache
    assert (cache.misses, cache.hits) == (1, 1)
    torch.testing.assert_close(cold, direct, rtol=0, atol=0)
    torch.testing.assert_close(warm, direct, rtol=0, atol=0)
    assert len(list((tmp_path / "speech_embedding").rglob("*.npy"))) == 1
