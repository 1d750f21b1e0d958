"""Shards: written with the original bytes and an index, streamed back per rank and worker with
a seeded epoch-dependent shuffle, every sample once per balanced epoch, resumable mid-epoch."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASS_NAMES, tiny_images

from anybind.config.schema import ManifestSource
from anybind.data.shards import ShardReader, ShardStream, read_index
from anybind.data.shards.index import expand_urls
from anybind.data.shards.stream import ShardSet
from anybind.errors import DataError
from anybind.modalities import build_modality
from anybind.recipes.shard import shard_sources


def write_manifest(root: Path, n: int = 96, bad: tuple[int, ...] = ()) -> Path:
    images, labels = tiny_images(n)
    (root / "img").mkdir(parents=True)
    lines = []
    for i, (image, y) in enumerate(zip(images, labels, strict=True)):
        if i in bad:
            (root / "img" / f"{i}.npy").write_bytes(b"torn")
        else:
            np.save(root / "img" / f"{i}.npy", image)
        row = {"image": f"img/{i}.npy", "text": f"a picture of {CLASS_NAMES[y]}", "label": int(y)}
        lines.append(json.dumps({**row, "id": f"s{i}"}))
    (root / "m.jsonl").write_text("\n".join(lines) + "\n")
    return root / "m.jsonl"


def modalities():
    return {"image": build_modality("image", {"size": (8, 8)}), "text": build_modality("text")}


@pytest.fixture
def shards(tmp_path) -> Path:
    manifest = write_manifest(tmp_path / "data")
    out = tmp_path / "shards"
    shard_sources(
        [ManifestSource(path=str(manifest))], out, modalities=modalities(),
        class_names=CLASS_NAMES, samples_per_shard=8, progress=False,
    )  # fmt: skip
    return out


def shard_set(out: Path, buffer: int = 10) -> ShardSet:
    urls = expand_urls(str(out / "shard-{000000..000011}.tar"))
    return ShardSet(urls, modalities(), CLASS_NAMES, samples=96, samples_per_epoch=96,
                    shuffle_buffer=buffer)  # fmt: skip


def test_shards_hold_the_original_bytes_and_an_index(shards, tmp_path):
    index = read_index(shards / "index.json")
    assert index.samples == 96 and len(index.shards) == 12
    assert all(s["samples"] == 8 for s in index.shards)
    assert index.modalities == {"image": 96, "text": 96} and index.class_names == CLASS_NAMES
    with tarfile.open(shards / "shard-000001.tar") as tar:
        names = tar.getnames()
        assert sorted(names[:3]) == ["000000008.image.npy", "000000008.json", "000000008.text.txt"]
        data = tar.extractfile("000000008.image.npy").read()
        meta = json.loads(tar.extractfile("000000008.json").read())
    assert data == (tmp_path / "data" / "img" / "8.npy").read_bytes()
    assert meta["id"] == "s8" and meta["label"] == int(tiny_images(96)[1][8])
    assert sorted(expand_urls(str(shards / "shard-*.tar"))) == expand_urls(
        str(shards / "shard-{000000..000011}.tar")
    )


def test_a_bad_sample_is_named_before_it_reaches_a_shard(tmp_path):
    manifest = write_manifest(tmp_path / "data", bad=(5,))
    with pytest.raises(DataError, match="row 6"):
        shard_sources([ManifestSource(path=str(manifest))], tmp_path / "a",
                      modalities=modalities(), progress=False)  # fmt: skip
    index, skipped = shard_sources(
        [ManifestSource(path=str(manifest))], tmp_path / "b", modalities=modalities(),
        skip_bad=True, progress=False,
    )  # fmt: skip
    assert skipped == 1 and index.samples == 95


def epoch_ids(shards: ShardSet, step_range: range, world: int, workers: int) -> list[list[str]]:
    """The ids of every step's global batch, as torchrun ranks with DataLoader workers see them."""
    per_rank = []
    for rank in range(world):
        stream = ShardStream(shards, batch_size=16, seed=3, start=step_range.start,
                             stop=step_range.stop, rank=rank, world=world)  # fmt: skip
        loader = torch.utils.data.DataLoader(stream, batch_size=None, num_workers=workers)
        per_rank.append([b["id"] for b in loader])
    return [sum((per_rank[r][i] for r in range(world)), []) for i in range(len(step_range))]


@pytest.mark.parametrize(("world", "workers"), [(1, 0), (2, 2), (2, 3), (4, 1)])
def test_every_sample_once_per_balanced_epoch_and_epochs_differ(shards, world, workers):
    sets = shard_set(shards)
    steps = epoch_ids(sets, range(0, 12), world, workers)  # 6 steps an epoch, 2 epochs
    assert all(len(ids) == 16 for ids in steps)
    first, second = sum(steps[:6], []), sum(steps[6:], [])
    assert sorted(first) == sorted(second) == sorted(f"s{i}" for i in range(96))
    assert first != second  # a new shuffle each epoch


def test_the_shuffle_buffer_itself_changes_with_the_epoch(shards):
    """One shard: the shard order cannot change, so only the buffer can reorder an epoch."""
    one = ShardSet([str(shards / "shard-000000.tar")], modalities(), CLASS_NAMES, samples=8,
                   samples_per_epoch=8, shuffle_buffer=10)  # fmt: skip
    stream = ShardStream(one, batch_size=8, seed=3, start=0, stop=3)
    epochs = [b["id"] for b in stream]
    assert all(sorted(ids) == [f"s{i}" for i in range(8)] for ids in epochs)
    assert len({tuple(ids) for ids in epochs}) == 3


def test_a_resumed_stream_gives_the_batches_of_the_uninterrupted_one(shards):
    sets = shard_set(shards)
    straight = epoch_ids(sets, range(0, 10), world=2, workers=2)
    assert epoch_ids(sets, range(4, 10), world=2, workers=2) == straight[4:]
    assert epoch_ids(sets, range(7, 10), world=2, workers=2) == straight[7:]


def test_too_few_shards_for_the_ranks_and_workers_is_an_error(shards):
    sets = shard_set(shards)
    sets.urls = sets.urls[:3]
    with pytest.raises(DataError, match="3 shards cannot feed 2 ranks × 2 workers"):
        epoch_ids(sets, range(0, 2), world=2, workers=2)


def test_the_reader_passes_over_every_sample_once(shards):
    sets = shard_set(shards)
    loader = torch.utils.data.DataLoader(ShardReader(sets, 5), batch_size=None, num_workers=2)
    ids = sum((b["id"] for b in loader), [])
    assert sorted(ids) == sorted(f"s{i}" for i in range(96))


def test_a_torn_shard_is_named(shards):
    path = shards / "shard-000002.tar"
    path.write_bytes(path.read_bytes()[:700])
    sets = shard_set(shards)
    with pytest.raises(DataError, match="shard-000002.tar"):
        list(ShardReader(sets, 5))
