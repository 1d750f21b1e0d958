"""Retrieval, zero-shot and geometry metrics against brute-force float64 loops."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anybind.evaluate import alignment, modality_gap, recall_at_k, uniformity, zero_shot
from anybind.evaluate.retrieval import first_match_ranks
from anybind.evaluate.zero_shot import ensemble


def _unit(n: int, d: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=gen), dim=1)


def _naive_recall(
    queries: torch.Tensor,
    keys: torch.Tensor,
    query_ids: list[int],
    key_ids: list[int],
    ks: tuple[int, ...],
) -> dict[str, float]:
    q, k = queries.double().tolist(), keys.double().tolist()
    hits = dict.fromkeys(ks, 0)
    for i, qi in enumerate(q):
        sims = [sum(x * y for x, y in zip(qi, kj, strict=True)) for kj in k]
        order = sorted(range(len(k)), key=lambda j: -sims[j])  # stable: ties by key order
        for kk in ks:
            if any(key_ids[j] == query_ids[i] for j in order[:kk]):
                hits[kk] += 1
    return {f"R@{kk}": hits[kk] / len(q) for kk in ks}


@pytest.mark.parametrize("chunk", [4096, 7, 1])
def test_recall_at_k_with_label_ids_equals_brute_force(chunk: int) -> None:
    queries, keys = _unit(40, 6, 0), _unit(30, 6, 1)
    gen = torch.Generator().manual_seed(2)
    query_ids = torch.randint(0, 8, (40,), generator=gen)
    key_ids = torch.randint(0, 8, (30,), generator=gen)
    ks = (1, 3, 5, 10)
    got = recall_at_k(queries, keys, query_ids=query_ids, key_ids=key_ids, ks=ks, chunk=chunk)
    want = _naive_recall(queries, keys, query_ids.tolist(), key_ids.tolist(), ks)
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < want["R@1"] < want["R@10"] < 1  # a case that discriminates between the ks


@pytest.mark.parametrize("chunk", [4096, 6])
def test_recall_at_k_with_paired_ids_equals_brute_force(chunk: int) -> None:
    # keys are noisy copies of the queries: sample i's own key is the one match
    queries = _unit(25, 8, 3)
    keys = F.normalize(queries + 0.9 * _unit(25, 8, 4), dim=1)
    ids = torch.arange(25)
    got = recall_at_k(queries, keys, query_ids=ids, key_ids=ids, ks=(1, 5, 10), chunk=chunk)
    want = _naive_recall(queries, keys, ids.tolist(), ids.tolist(), (1, 5, 10))
    assert got == pytest.approx(want, abs=1e-12)
    assert 0 < want["R@1"] < 1


def test_recall_at_k_when_k_exceeds_the_number_of_keys() -> None:
    queries, keys = _unit(12, 4, 5), _unit(4, 4, 6)
    query_ids = torch.tensor([0, 1, 2, 3, 9] * 2 + [0, 9])
    key_ids = torch.arange(4)
    got = recall_at_k(queries, keys, query_ids=query_ids, key_ids=key_ids, ks=(1, 4, 10), chunk=5)
    want = _naive_recall(queries, keys, query_ids.tolist(), key_ids.tolist(), (1, 4, 10))
    assert got == pytest.approx(want, abs=1e-12)
    # every query whose id exists among the keys is found once all keys are returned
    assert got["R@10"] == pytest.approx(9 / 12) and got["R@4"] == pytest.approx(9 / 12)


def test_recall_at_k_hand_computed_case() -> None:
    keys = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    queries = F.normalize(torch.tensor([[1.0, 0.1], [0.1, 1.0], [-1.0, 0.2]]), dim=1)
    # nearest keys: q0 → 0, 1, 2; q1 → 1, 0, 2; q2 → 2, 1, 0
    query_ids = torch.tensor([1, 1, 7])
    key_ids = torch.tensor([0, 1, 7])
    got = recall_at_k(queries, keys, query_ids=query_ids, key_ids=key_ids, ks=(1, 2, 3))
    assert got == {
        "R@1": pytest.approx(2 / 3),
        "R@2": pytest.approx(1.0),
        "R@3": pytest.approx(1.0),
    }


@pytest.mark.parametrize("chunk", [4096, 3, 1])
def test_recall_at_k_breaks_exact_ties_by_key_index(chunk: int) -> None:
    """Duplicated embeddings score exactly alike: the lower key index ranks first, whatever the
    `ks` asked for and however the work is chunked (torch.topk promises no order for ties)."""
    base = _unit(6, 5, 7)
    keys = torch.cat([base, base])  # key j and key j + 6 are the same vector
    # query i's only match is the second copy of its own vector: the first copy ranks ahead
    query_ids, key_ids = torch.arange(6), torch.cat([torch.arange(100, 106), torch.arange(6)])
    for ks in ((1,), (1, 2), (1, 2, 5, 10)):
        got = recall_at_k(base, keys, query_ids=query_ids, key_ids=key_ids, ks=ks, chunk=chunk)
        assert got["R@1"] == 0.0
        if 2 in ks:
            assert got["R@2"] == 1.0
    # matching the first copy instead: found at rank 0
    first = torch.cat([torch.arange(6), torch.arange(100, 106)])
    got = recall_at_k(base, keys, query_ids=query_ids, key_ids=first, ks=(1,), chunk=chunk)
    assert got["R@1"] == 1.0
    ranks = first_match_ranks(base, keys, query_ids=query_ids, key_ids=key_ids, chunk=chunk)
    assert ranks.tolist() == [1] * 6


def test_zero_shot_gives_a_tie_to_the_lower_class_index() -> None:
    classes = _unit(3, 4, 8)
    classes = torch.cat([classes, classes[:1]])  # class 3 is class 0's twin
    emb = torch.cat([classes[:1]] * 5)
    got = zero_shot(emb, torch.zeros(5, dtype=torch.long), classes)
    assert got["top1"] == 1.0 and got["confusion"][0][0] == 5
    other = zero_shot(emb, torch.full((5,), 3), classes)
    assert other["top1"] == 0.0 and other["confusion"][3][0] == 5


def _naive_zero_shot(
    emb: torch.Tensor, labels: list[int], classes: torch.Tensor
) -> tuple[float, float, dict[int, float], list[list[int]], int]:
    e, c = emb.double().tolist(), classes.double().tolist()
    top1 = top5 = n = 0
    per_class_hits: dict[int, list[int]] = {}
    confusion = [[0] * len(c) for _ in c]
    for x, y in zip(e, labels, strict=True):
        if y < 0:
            continue
        scores = [sum(a * b for a, b in zip(x, cj, strict=True)) for cj in c]
        order = sorted(range(len(c)), key=lambda j: -scores[j])
        n += 1
        top1 += order[0] == y
        top5 += y in order[:5]
        per_class_hits.setdefault(y, []).append(int(order[0] == y))
        confusion[y][order[0]] += 1
    per_class = {y: sum(h) / len(h) for y, h in per_class_hits.items()}
    return top1 / n, top5 / n, per_class, confusion, n


def test_zero_shot_equals_brute_force() -> None:
    n_classes, d = 9, 6
    classes = _unit(n_classes, d, 7)
    gen = torch.Generator().manual_seed(8)
    labels = torch.randint(0, n_classes, (60,), generator=gen)
    labels[[3, 17, 40]] = -1  # unlabelled samples are ignored
    labels[labels == 4] = 5  # class 4 has no sample: no per-class entry
    emb = F.normalize(classes[labels.clamp(min=0)] + 1.1 * _unit(60, d, 9), dim=1)
    names = [f"c{i}" for i in range(n_classes)]
    got = zero_shot(emb, labels, classes, names)
    top1, top5, per_class, confusion, n = _naive_zero_shot(emb, labels.tolist(), classes)
    assert got["n"] == n == 57
    assert got["top1"] == pytest.approx(top1, abs=1e-6)
    assert got["top5"] == pytest.approx(top5, abs=1e-6)
    assert 0 < top1 < top5 < 1
    assert got["per_class_recall"] == pytest.approx(
        {names[y]: r for y, r in per_class.items()}, abs=1e-6
    )
    assert "c4" not in got["per_class_recall"]
    assert got["confusion"] == confusion


def test_zero_shot_with_fewer_than_five_classes_reports_top_c() -> None:
    classes = _unit(3, 4, 10)
    labels = torch.tensor([0, 1, 2, 2, 1])
    emb = F.normalize(classes[labels] + 0.8 * _unit(5, 4, 11), dim=1)
    got = zero_shot(emb, labels, classes)
    assert "top3" in got and "top5" not in got
    assert got["top3"] == pytest.approx(1.0)
    top1, *_ = _naive_zero_shot(emb, labels.tolist(), classes)
    assert got["top1"] == pytest.approx(top1)
    assert set(got["per_class_recall"]) == {"0", "1", "2"}


def test_ensemble_is_the_normalised_mean_of_normalised_prompts() -> None:
    gen = torch.Generator().manual_seed(12)
    prompts = torch.randn(4, 3, 5, generator=gen, dtype=torch.float64) * 3
    got = ensemble(prompts)
    for c in range(4):
        mean = [
            sum(p[d] / math.sqrt(sum(v * v for v in p)) for p in prompts[c].tolist()) / 3
            for d in range(5)
        ]
        norm = math.sqrt(sum(v * v for v in mean))
        assert got[c].tolist() == pytest.approx([v / norm for v in mean], abs=1e-12)


def test_modality_gap_is_the_distance_between_centroids() -> None:
    a = _unit(30, 5, 13).double() + 0.3
    b = _unit(20, 5, 14).double()
    ca = [sum(row[d] for row in a.tolist()) / 30 for d in range(5)]
    cb = [sum(row[d] for row in b.tolist()) / 20 for d in range(5)]
    want = math.sqrt(sum((x - y) ** 2 for x, y in zip(ca, cb, strict=True)))
    assert modality_gap(a, b) == pytest.approx(want, rel=1e-12)
    assert modality_gap(a.float(), b.float()) == pytest.approx(want, rel=1e-5)
    assert modality_gap(a, a) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("alpha", [2.0, 1.0])
def test_alignment_is_the_mean_powered_pair_distance(alpha: float) -> None:
    x, y = _unit(25, 6, 15), _unit(25, 6, 16)
    want = (
        sum(
            math.sqrt(sum((p - q) ** 2 for p, q in zip(xi, yi, strict=True))) ** alpha
            for xi, yi in zip(x.double().tolist(), y.double().tolist(), strict=True)
        )
        / 25
    )
    assert alignment(x, y, alpha=alpha) == pytest.approx(want, rel=1e-5)
    assert alignment(x, x, alpha=alpha) == pytest.approx(0.0, abs=1e-12)


def _naive_uniformity(x: list[list[float]], t: float = 2.0) -> float:
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            sq = sum((p - q) ** 2 for p, q in zip(x[i], x[j], strict=True))
            terms.append(math.exp(-t * sq))
    return math.log(sum(terms) / len(terms))


@pytest.mark.parametrize("t", [2.0, 0.5])
def test_uniformity_equals_the_wang_isola_formula(t: float) -> None:
    x = _unit(40, 5, 17)
    want = _naive_uniformity(x.double().tolist(), t)
    assert uniformity(x, t=t) == pytest.approx(want, rel=1e-9)


def test_uniformity_known_cases() -> None:
    antipodal = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    assert uniformity(antipodal) == pytest.approx(-8.0, abs=1e-12)  # log exp(-2·4)
    orthogonal = torch.eye(3)
    assert uniformity(orthogonal) == pytest.approx(-4.0, abs=1e-12)  # ||ei-ej||² = 2
    collapsed = torch.tensor([[0.6, 0.8]] * 5)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(uniformity(torch.tensor([[1.0, 0.0]])))
    # spread points are more uniform (lower) than clustered ones
    clustered = F.normalize(torch.tensor([[1.0, 0.0]]) + 0.1 * _unit(50, 2, 18), dim=1)
    assert uniformity(_unit(50, 2, 19)) < uniformity(clustered)


def test_uniformity_subsamples_reproducibly_above_max_samples() -> None:
    x = _unit(60, 4, 20)
    got = uniformity(x, max_samples=25, seed=3)
    pick = torch.randperm(60, generator=torch.Generator().manual_seed(3))[:25]
    assert got == pytest.approx(_naive_uniformity(x[pick].double().tolist()), rel=1e-9)
    assert uniformity(x, max_samples=25, seed=3) == got
    assert uniformity(x, max_samples=25, seed=4) != pytest.approx(got, rel=1e-6)
    assert uniformity(x, max_samples=60) == pytest.approx(
        _naive_uniformity(x.double().tolist()), rel=1e-9
    )
