"""Embed a collection, index it, search it: against a plain loop over the towers, exact FAISS,
and a run interrupted half way."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from conftest import CLASS_NAMES, heldout_of, tiny_config
from typer.testing import CliRunner

from anybind.api import embed, search
from anybind.cli.main import app
from anybind.config import config_from_dict
from anybind.errors import AnybindError
from anybind.recipes.index import index_collection
from anybind.recipes.train import train
from anybind.search import store
from anybind.search.engine import Searcher
from anybind.search.index import IndexParams, load_index
from anybind.search.store import EmbeddedCollection
from anybind.space import load_space

KEYS = ["image=images", "text=captions"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny run that has learnt its task, and the held-out file to embed."""
    from conftest import write_tiny

    root = tmp_path_factory.mktemp("use")
    npz = write_tiny(root / "tiny.npz", 96)
    write_tiny(heldout_of(npz), 48, seed=1)
    train(config_from_dict(tiny_config(npz, **{"optim.steps": 60})), root / "run", progress=False)
    return root / "run", heldout_of(npz)


def test_embeddings_equal_a_plain_loop_over_the_towers(trained, tmp_path) -> None:
    run, data = trained
    manifest = embed(run, [str(data)], tmp_path / "emb", keys=KEYS, part_size=20, dtype="float32")
    assert manifest["counts"] == {"image": 48, "text": 48} and manifest["samples"] == 48
    assert sorted(manifest["parts"]) == ["0", "1", "2"] and manifest["skipped"] == 0
    space = load_space(run)
    arrays = np.load(data)
    with torch.no_grad():
        image = space.towers["image"]
        batch = image.modality.collate([image.modality.load(x) for x in arrays["images"]])
        expected = torch.nn.functional.normalize(image(batch), dim=-1).numpy()
        text = space.towers["text"]
        expected_text = torch.nn.functional.normalize(
            text([str(c) for c in arrays["captions"]]), dim=-1
        ).numpy()
    got = EmbeddedCollection.open(tmp_path / "emb").modality("image")
    np.testing.assert_allclose(got.vectors, expected, atol=1e-5)
    got_text = EmbeddedCollection.open(tmp_path / "emb").modality("text")
    np.testing.assert_allclose(got_text.vectors, expected_text, atol=1e-5)
    table = got.table.to_pydict()
    assert table["row"] == list(range(48)) and table["id"] == [str(i) for i in range(48)]
    assert table["label"] == arrays["labels"].tolist()
    assert table["class"] == [CLASS_NAMES[y] for y in arrays["labels"]]


def test_an_interrupted_embed_keeps_its_finished_parts_and_redoes_the_rest(
    trained, tmp_path, monkeypatch
) -> None:
    run, data = trained
    embed(run, [str(data)], tmp_path / "whole", keys=KEYS, part_size=10)
    real = store.write_part
    written = []

    def dies_after_two(root, k, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003
        if len(written) == 2:
            raise KeyboardInterrupt  # what Ctrl-C or a kill between parts leaves
        written.append(k)
        return real(root, k, *args, **kwargs)

    from anybind.recipes import embed as embed_module

    monkeypatch.setattr(embed_module, "write_part", dies_after_two)
    with pytest.raises(KeyboardInterrupt):
        embed(run, [str(data)], tmp_path / "emb", keys=KEYS, part_size=10)
    assert not (tmp_path / "emb" / "manifest.json").exists()
    with pytest.raises(AnybindError, match="interrupted"):
        EmbeddedCollection.open(tmp_path / "emb")
    kept = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "emb" / "image").iterdir()}
    assert len(kept) == 4  # two parts, each an .npy and a .parquet
    monkeypatch.setattr(embed_module, "write_part", real)
    redone = []
    monkeypatch.setattr(
        embed_module,
        "write_part",
        lambda root, k, *a, **kw: (redone.append(k), real(root, k, *a, **kw)),
    )
    manifest = embed(run, [str(data)], tmp_path / "emb", keys=KEYS, part_size=10)
    assert redone == [2, 3, 4] and manifest["counts"] == {"image": 48, "text": 48}
    for name, mtime in kept.items():  # the finished parts were not written again
        assert (tmp_path / "emb" / "image" / name).stat().st_mtime_ns == mtime
    whole = EmbeddedCollection.open(tmp_path / "whole").modality("image")
    resumed = EmbeddedCollection.open(tmp_path / "emb").modality("image")
    np.testing.assert_array_equal(resumed.vectors, whole.vectors)
    assert resumed.table.equals(whole.table)


def test_other_settings_on_a_started_folder_are_refused(trained, tmp_path) -> None:
    run, data = trained
    embed(run, [str(data)], tmp_path / "emb", keys=KEYS, part_size=20)
    with pytest.raises(AnybindError, match="part_size"):
        embed(run, [str(data)], tmp_path / "emb", keys=KEYS, part_size=10)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(AnybindError, match="not an embedding folder"):
        embed(run, [str(data)], tmp_path / "other", keys=KEYS)


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_each_item_finds_itself_first_and_recall_is_measured(trained, tmp_path, kind) -> None:
    run, data = trained
    embed(run, [str(data)], tmp_path / "emb", keys=KEYS, dtype="float32")
    infos = index_collection(tmp_path / "emb", IndexParams(kind))
    assert set(infos) == {"image", "text"}
    _, saved = load_index(tmp_path / "emb", "image")
    assert saved["kind"] == kind and saved["vectors"] == 48 and saved["recall_at_10"] >= 0.95
    searcher = Searcher.open(load_space(run), tmp_path / "emb")
    images = EmbeddedCollection.open(tmp_path / "emb").modality("image")
    hits = searcher.search(images.vectors, "image", k=3)
    ids = images.table.column("id").to_pylist()
    if kind == "flat":  # exact: an item queried with its own embedding comes first
        assert [h[0].id for h in hits] == ids
    assert all(h[0].score == pytest.approx(1.0, abs=1e-4) for h in hits)


def test_queries_are_embedded_in_one_batch_and_nothing_is_kept(trained, tmp_path) -> None:
    """A frozen text tower caches its features for training; a searcher must not (each new
    query would stay in memory), and one batch must equal the one-at-a-time features."""
    run, data = trained
    embed(run, [str(data)], tmp_path / "emb", keys=KEYS)
    space = load_space(run)
    text = space.towers["text"]
    text.cache_features = True  # as a frozen text encoder trains
    queries = [f"query {i} about {name}" for i, name in enumerate(CLASS_NAMES * 3)]
    with torch.no_grad():
        one_at_a_time = torch.nn.functional.normalize(text(queries), dim=-1).numpy()
    assert len(text._cache) == len(queries)
    searcher = Searcher.open(space, tmp_path / "emb")
    got = searcher.embed("text", queries)
    assert not text.cache_features and text._cache == {}
    np.testing.assert_allclose(got, one_at_a_time, atol=1e-5)


def test_text_queries_find_images_of_their_class(trained, tmp_path) -> None:
    run, data = trained
    embed(run, [str(data)], tmp_path / "emb", keys=KEYS)
    index_collection(tmp_path / "emb", IndexParams("flat"))
    queries = [f"a picture of {name}" for name in CLASS_NAMES]
    results = search(run, tmp_path / "emb", text=queries, to="image", k=5)
    assert [r["query"] for r in results] == queries
    for name, result in zip(CLASS_NAMES, results, strict=True):
        assert len(result["hits"]) == 5
        assert [h["class"] for h in result["hits"]] == [name] * 5, result
        scores = [h["score"] for h in result["hits"]]
        assert scores == sorted(scores, reverse=True)


def test_the_cli_embeds_indexes_and_searches(trained, tmp_path) -> None:
    run, data = trained
    runner = CliRunner()
    emb = tmp_path / "emb"
    args = ["embed", str(run), "--data", str(data), "--out", str(emb), "--quiet"]
    for key in KEYS:
        args += ["--keys", key]
    done = runner.invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "embedded 48 image, 48 text" in done.output
    done = runner.invoke(app, ["index", str(emb), "--kind", "hnsw"])
    assert done.exit_code == 0 and "recall@10" in done.output, done.output
    done = runner.invoke(
        app, ["search", str(run), "--index", str(emb), "--text", "a picture of two",
              "--to", "image", "-k", "3", "--json"],
    )  # fmt: skip
    assert done.exit_code == 0, done.output
    (result,) = json.loads(done.output)
    assert [h["class"] for h in result["hits"]] == ["two"] * 3
    meta = pq.read_table(emb / "image" / "meta-00000.parquet").to_pydict()
    assert result["hits"][0]["id"] in meta["id"]
    done = runner.invoke(
        app, ["search", str(run), "--index", str(emb), "--text", "x", "--to", "audio"]
    )
    assert done.exit_code == 2 and "holds no 'audio' embeddings" in done.output


@pytest.mark.slow
def test_two_ranks_embed_the_same_collection_and_search_finds_the_same(trained, tmp_path) -> None:
    """Under torchrun each rank embeds its own parts; the merged collection is the one-process
    collection, so an index over it answers the same."""
    import sys

    from torchrun_launch import torchrun

    run, data = trained
    one = tmp_path / "one"
    embed(run, [str(data)], one, keys=KEYS, part_size=10)
    anybind = Path(sys.executable).with_name("anybind")
    args = [str(anybind), "embed", str(run), "--data", str(data), "--out", str(tmp_path / "two"),
            "--part-size", "10", "--quiet", "--keys", KEYS[0], "--keys", KEYS[1]]  # fmt: skip
    done = torchrun(args, world=2, timeout_s=240, no_python=True)
    assert done.returncode == 0, done.stdout[-4000:]
    manifest = json.loads((tmp_path / "two" / "manifest.json").read_text())
    assert {p["rank"] for p in manifest["parts"].values()} == {0, 1}
    assert manifest["counts"] == {"image": 48, "text": 48}
    for name in ("image", "text"):
        a = EmbeddedCollection.open(one).modality(name)
        b = EmbeddedCollection.open(tmp_path / "two").modality(name)
        np.testing.assert_array_equal(a.vectors, b.vectors)
        assert a.table.equals(b.table)
    results = []
    for root in (one, tmp_path / "two"):
        index_collection(root, IndexParams("flat"))
        results.append(search(run, root, text=["a picture of one"], to="image", k=10))
    assert results[0] == results[1]


def test_shards_are_embedded_one_part_per_shard_like_their_source_files(trained, tmp_path) -> None:
    """Streamed from tar shards, each shard is a part; every sample gets the vector it gets
    when the manifest the shards were written from is embedded."""
    from test_shard_training import write_shards

    from anybind.config.schema import ShardsSource

    run, _ = trained
    manifest, shards = write_shards(tmp_path)
    from_shards = embed(run, [ShardsSource(path=str(shards / "shard-*.tar"))], tmp_path / "a")
    from_files = embed(run, [str(manifest)], tmp_path / "b")
    assert len(from_shards["parts"]) == 12 and from_shards["counts"] == from_files["counts"]
    for name in ("image", "text"):
        a = EmbeddedCollection.open(tmp_path / "a").modality(name)
        b = EmbeddedCollection.open(tmp_path / "b").modality(name)
        by_id = dict(zip(b.table.column("id").to_pylist(), b.vectors, strict=True))
        for sample_id, vector in zip(a.table.column("id").to_pylist(), a.vectors, strict=True):
            np.testing.assert_allclose(vector, by_id[sample_id], atol=2e-3)  # float16 storage
    rows = EmbeddedCollection.open(tmp_path / "a").modality("image").table.column("row")
    assert rows.to_pylist()[:8] == list(range(8))  # a shard numbers its samples
