"""Index parameters: size-based defaults, and the query-time setting tuned to a target recall
against exact search (the smallest on the ladder that reaches it)."""

from __future__ import annotations

import numpy as np
import pytest

from anybind.errors import ConfigError
from anybind.search.index import IndexParams, build_index, measured_recall, recall_at, tune


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(50, dim))
    x = centres[rng.integers(0, 50, n)] + rng.normal(0, 0.6, (n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def test_size_based_defaults() -> None:
    ivf = IndexParams("ivf").filled(1_000_000)
    assert ivf.nlist == 4000 and ivf.nprobe is None  # nprobe is tuned
    assert IndexParams("ivf").filled(1000).nlist == 1000 // 39  # ≥ 39 points per list
    hnsw = IndexParams("hnsw").filled(10)
    assert (hnsw.m, hnsw.ef_construction, hnsw.ef_search) == (32, 80, None)
    with pytest.raises(ConfigError, match="--kind"):
        IndexParams("lsh").filled(10)
    with pytest.raises(ConfigError, match="more than"):
        IndexParams("ivf", nlist=100).filled(50)


@pytest.mark.parametrize("kind", ["ivf", "hnsw"])
def test_the_tuned_setting_is_the_smallest_that_reaches_the_target(kind: str) -> None:
    x = clustered(4000)
    params = IndexParams(kind, target_recall=0.97).filled(len(x))
    index = build_index(x, params)
    tuned, recall = tune(index, x, params)
    assert recall >= 0.97 and recall == measured_recall(index, x)
    value = tuned.nprobe if kind == "ivf" else tuned.ef_search
    smaller = value // 2
    if kind == "ivf" and smaller >= 1:
        index.nprobe = smaller
        assert measured_recall(index, x) < 0.97
    if kind == "ivf":
        assert value < params.nlist  # cheaper than scanning every list


def test_recall_counts_equal_scores_as_hits() -> None:
    found = np.array([[3, 4]])
    scores = np.array([[0.9, 0.8]])
    assert recall_at(found, scores, np.array([0.8])) == 1.0  # 4 ties the exact 2nd score
    assert recall_at(found, scores, np.array([0.85])) == 0.5
    assert recall_at(np.array([[3, -1]]), scores, np.array([0.8])) == 0.5  # -1: no result


def test_a_suffix_several_modalities_read_needs_the_modality_said():
    from types import SimpleNamespace

    from anybind.errors import DataError
    from anybind.modalities import build_modality
    from anybind.search.engine import Searcher

    towers = {
        name: SimpleNamespace(modality=build_modality(kind))
        for name, kind in (("image", "image"), ("video", "video"), ("text", "text"))
    }
    fake = SimpleNamespace(space=SimpleNamespace(towers=towers))
    assert Searcher.modality_for_suffix(fake, ".png") == "image"  # type: ignore[arg-type]
    assert Searcher.modality_for_suffix(fake, ".mp4") == "video"  # type: ignore[arg-type]
    assert Searcher.modality_for_suffix(fake, ".exe") is None  # type: ignore[arg-type]
    with pytest.raises(DataError, match="read by image, video"):
        Searcher.modality_for_suffix(fake, ".npy")  # type: ignore[arg-type]
    assert Searcher.modality_for_suffix(fake, ".NPY", "video") == "video"  # type: ignore[arg-type]
    with pytest.raises(DataError, match="does not read"):
        Searcher.modality_for_suffix(fake, ".mp4", "image")  # type: ignore[arg-type]
    with pytest.raises(DataError, match="no modality 'audio'"):
        Searcher.modality_for_suffix(fake, ".npy", "audio")  # type: ignore[arg-type]
