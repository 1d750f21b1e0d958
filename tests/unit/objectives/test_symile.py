"""Symile: MIP and the loss against naive loops, CLIP at M = 2, batch-permutation invariance,
missing-modality handling, gradients, and the XOR separation from pairwise CLIP."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from anybind.objectives import info_nce
from anybind.objectives.symile import Symile, mip, mip_scores, symile_loss
from anybind.recipes.repro_symile_xor import run_symile_xor


def _unit(n: int, d: int, gen: torch.Generator, dtype=torch.float64) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=gen, dtype=dtype), dim=1)


def _feats(m: int, n: int, d: int, seed: int, dtype=torch.float64) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [_unit(n, d, gen, dtype) for _ in range(m)]


def _naive_mip(*vectors: list[float]) -> float:
    total = 0.0
    for d in range(len(vectors[0])):
        prod = 1.0
        for v in vectors:
            prod *= v[d]
        total += prod
    return total


def _cross_entropy(scores: list[float], target: int) -> float:
    peak = max(scores)
    lse = peak + math.log(sum(math.exp(s - peak) for s in scores))
    return lse - scores[target]


def _naive_symile(
    features: list[torch.Tensor], scale: float, candidates, queries: list[list[int]] | None = None
) -> float:
    """Plain Python, float64. candidates(m, i) → list of row-index tuples (one row per non-anchor
    modality, in order) and the position of the true tuple among them. queries[m]: the rows that
    are queries for anchor m (default all); anchors without queries are left out of the mean."""
    rows = [f.tolist() for f in features]
    m_count, n = len(rows), len(rows[0])
    queries = queries or [list(range(n))] * m_count
    total, anchors = 0.0, 0
    for m in range(m_count):
        if not queries[m]:
            continue
        anchors += 1
        others = [rows[k] for k in range(m_count) if k != m]
        per_anchor = 0.0
        for i in queries[m]:
            tuples, target = candidates(m, i)
            scores = [
                scale * _naive_mip(rows[m][i], *(o[j] for o, j in zip(others, t, strict=True)))
                for t in tuples
            ]
            per_anchor += _cross_entropy(scores, target)
        total += per_anchor / len(queries[m])
    return total / anchors


# ---------------------------------------------------------------- MIP


@pytest.mark.parametrize("m", [2, 3, 4, 5])
def test_mip_equals_a_naive_loop(m: int) -> None:
    xs = _feats(m, 6, 7, seed=m)
    got = mip(*xs)
    assert got.shape == (6,)
    want = [_naive_mip(*(x[i].tolist() for x in xs)) for i in range(6)]
    assert got.tolist() == pytest.approx(want, rel=1e-12, abs=1e-14)
    if m == 2:
        torch.testing.assert_close(got, (xs[0] * xs[1]).sum(dim=1))


def test_mip_batched_forms() -> None:
    q1, q2 = _feats(2, 5, 4, seed=0)
    cand = _feats(1, 9, 4, seed=1)[0]
    table = torch.tensor(
        [
            [_naive_mip(q1[b].tolist(), q2[b].tolist(), cand[c].tolist()) for c in range(9)]
            for b in range(5)
        ],
        dtype=torch.float64,
    )
    torch.testing.assert_close(mip(q1[:, None], q2[:, None], cand[None]), table)
    torch.testing.assert_close(mip_scores([q1, q2], cand), table)
    with pytest.raises(ValueError):
        mip(q1)


# ---------------------------------------------------------------- the loss


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("negatives", ["n", "n_squared"])
def test_two_modalities_is_exactly_clips_symmetric_info_nce(seed: int, negatives: str) -> None:
    a, b = _feats(2, 5 + seed, 6, seed)
    scale = torch.tensor(1.0 + 7.0 * seed, dtype=torch.float64)
    gen = torch.Generator().manual_seed(seed)
    got = symile_loss([a, b], scale, negatives, gen)
    torch.testing.assert_close(got, info_nce(a, b, scale), rtol=1e-12, atol=1e-12)


def test_n_squared_equals_a_naive_loop_over_all_combinations() -> None:
    n, scale = 4, 3.0
    feats = _feats(3, n, 5, seed=7)

    def every_combination(m: int, i: int):
        tuples = list(itertools.product(range(n), repeat=2))
        return tuples, tuples.index((i, i))

    got = symile_loss(feats, scale, "n_squared")
    assert got.item() == pytest.approx(_naive_symile(feats, scale, every_combination), rel=1e-12)


@pytest.mark.parametrize("m_count", [3, 4])
def test_n_with_explicit_permutations_equals_the_documented_candidates(m_count: int) -> None:
    """Candidate j for row i = (first non-anchor at j, the k-th further one at π_k(j)), except
    that candidate i is the true tuple."""
    n, scale = 6, 4.0
    feats = _feats(m_count, n, 5, seed=m_count)
    gen = torch.Generator().manual_seed(0)
    perms = [[torch.randperm(n, generator=gen) for _ in range(m_count - 2)] for _ in range(m_count)]

    def shuffled(m: int, i: int):
        tuples = [(j, *(p[j].item() for p in perms[m])) for j in range(n)]
        tuples[i] = (i,) * (m_count - 1)
        return tuples, i

    got = symile_loss(feats, scale, "n", permutations=perms)
    assert got.item() == pytest.approx(_naive_symile(feats, scale, shuffled), rel=1e-12)


def test_query_masks_restrict_the_rows_that_are_queries() -> None:
    n, scale = 5, 2.5
    feats = _feats(3, n, 4, seed=11)
    queries = [[0, 2, 3], [], [4]]
    masks = [torch.tensor([i in q for i in range(n)]) for q in queries]

    def every_combination(m: int, i: int):
        tuples = list(itertools.product(range(n), repeat=2))
        return tuples, tuples.index((i, i))

    got = symile_loss(feats, scale, "n_squared", query_masks=masks)
    want = _naive_symile(feats, scale, every_combination, queries)
    assert got.item() == pytest.approx(want, rel=1e-12)


def test_n_draws_from_the_generator_and_shuffle_false_uses_aligned_tuples() -> None:
    feats = _feats(3, 8, 5, seed=1)
    loss = [symile_loss(feats, 5.0, "n", torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert loss[0].item() == loss[1].item() != loss[2].item()
    identity = [[torch.arange(8)] for _ in range(3)]
    torch.testing.assert_close(
        symile_loss(feats, 5.0, "n", shuffle=False),
        symile_loss(feats, 5.0, "n", permutations=identity),
    )


def test_n_squared_refuses_too_many_candidates() -> None:
    feats = _feats(4, 50, 3, seed=0)  # 50^3 = 125,000 candidates per row
    with pytest.raises(ValueError, match="n_squared"):
        symile_loss(feats, 1.0, "n_squared")
    assert torch.isfinite(symile_loss(feats, 1.0, "n_squared", max_candidates=200_000))


def test_bad_arguments() -> None:
    feats = _feats(3, 4, 3, seed=0)
    with pytest.raises(ValueError):
        symile_loss(feats, 1.0, "n_cubed")
    with pytest.raises(ValueError):
        symile_loss(feats[:1], 1.0)
    with pytest.raises(ValueError):
        symile_loss([feats[0], feats[1][:3]], 1.0)


# ---------------------------------------------------------------- batch permutation


@pytest.mark.parametrize("m_count", [2, 3, 4])
def test_n_squared_is_invariant_to_permuting_the_batch(m_count: int) -> None:
    feats = _feats(m_count, 5, 4, seed=m_count)
    p = torch.randperm(5, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(
        symile_loss([f[p] for f in feats], 6.0, "n_squared"),
        symile_loss(feats, 6.0, "n_squared"),
        rtol=1e-12,
        atol=1e-12,
    )


@pytest.mark.parametrize("m_count", [3, 4])
def test_n_is_invariant_under_the_conjugated_permutations(m_count: int) -> None:
    """Permuting the batch by P (row i' of the new batch is row P[i'] of the old) and the shuffles
    by π' = P⁻¹ ∘ π ∘ P gives the same candidate sets row by row, so the same loss."""
    n = 7
    feats = _feats(m_count, n, 4, seed=m_count)
    gen = torch.Generator().manual_seed(0)
    perms = [[torch.randperm(n, generator=gen) for _ in range(m_count - 2)] for _ in range(m_count)]
    p = torch.randperm(n, generator=gen)
    p_inv = torch.argsort(p)
    conjugated = [[p_inv[q[p]] for q in qs] for qs in perms]
    torch.testing.assert_close(
        symile_loss([f[p] for f in feats], 6.0, "n", permutations=conjugated),
        symile_loss(feats, 6.0, "n", permutations=perms),
        rtol=1e-12,
        atol=1e-12,
    )


# ---------------------------------------------------------------- missing modalities


def _batch(m_count: int, n: int, seed: int):
    names = [f"m{k}" for k in range(m_count)]
    feats = dict(zip(names, _feats(m_count, n, 5, seed), strict=True))
    gen = torch.Generator().manual_seed(seed + 100)
    masks = {k: torch.rand(n, generator=gen) > 0.25 for k in names}
    return names, feats, masks


@pytest.mark.parametrize("negatives", ["n", "n_squared"])
def test_masked_missing_samples_do_not_change_the_loss_of_the_others(negatives: str) -> None:
    names, feats, masks = _batch(3, 12, seed=0)
    complete = masks["m0"] & masks["m1"] & masks["m2"]
    assert 2 <= int(complete.sum()) < 12
    module = Symile(names, negatives=negatives, missing="mask")
    scale = torch.tensor(5.0, dtype=torch.float64)
    torch.manual_seed(0)
    got = module(feats, masks, None, scale)["symile_loss"]
    torch.manual_seed(0)
    want = symile_loss([feats[k][complete] for k in names], scale, negatives)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    # Changing a dropped sample's features changes nothing.
    dropped = int((~complete).nonzero()[0])
    feats["m1"] = feats["m1"].clone()
    feats["m1"][dropped] = -feats["m1"][dropped]
    torch.manual_seed(0)
    torch.testing.assert_close(module(feats, masks, None, scale)["symile_loss"], want)


def test_mask_mode_skips_batches_without_two_complete_samples() -> None:
    names, feats, _ = _batch(3, 4, seed=1)
    masks = {k: torch.tensor([True, False, True, True]) for k in names}
    masks["m2"] = torch.tensor([True, True, False, False])
    assert Symile(names)(feats, masks, None, torch.tensor(1.0)) == {}
    assert Symile(names)({k: feats[k] for k in names[:2]}, masks, None, torch.tensor(1.0)) == {}


def test_learned_missing_embedding_substitutes_and_trains() -> None:
    names, feats, masks = _batch(3, 10, seed=2)
    masks["m0"][3] = masks["m1"][3] = masks["m2"][3] = False  # nothing present: dropped
    module = Symile(names, negatives="n_squared", missing="learned", dim=5).double()
    scale = torch.tensor(4.0, dtype=torch.float64)
    got = module(feats, masks, None, scale)["symile_loss"]

    keep = masks["m0"] | masks["m1"] | masks["m2"]
    filled = [
        torch.where(masks[k][:, None], feats[k], module.missing_embedding(k))[keep] for k in names
    ]
    want = symile_loss(filled, scale, "n_squared", query_masks=[masks[k][keep] for k in names])
    torch.testing.assert_close(got, want)
    for k in names:
        assert module.missing_embedding(k).norm().item() == pytest.approx(1.0)
    got.backward()
    for k in names:
        grad = module.missing_embeddings[k].grad
        assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0


def test_learned_missing_only_queries_rows_that_observe_the_anchor() -> None:
    names, feats, masks = _batch(3, 8, seed=3)
    module = Symile(names, negatives="n_squared", missing="learned", dim=5).double()
    scale = torch.tensor(4.0, dtype=torch.float64)
    base = module(feats, masks, None, scale)["symile_loss"]
    # A row missing m0 has the placeholder as its m0 embedding; its real m0 features are unused.
    row = int((~masks["m0"]).nonzero()[0])
    feats["m0"] = feats["m0"].clone()
    feats["m0"][row] = -feats["m0"][row]
    torch.testing.assert_close(module(feats, masks, None, scale)["symile_loss"], base)
    # A modality absent from the batch is all placeholder and never a query.
    without = {k: v for k, v in feats.items() if k != "m2"}
    out = module(without, masks, None, scale)["symile_loss"]
    assert torch.isfinite(out)
    with pytest.raises(ValueError, match="dim"):
        Symile(names, missing="learned")


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize("negatives", ["n", "n_squared"])
@pytest.mark.parametrize("m_count", [2, 3, 4])
def test_finite_gradients_at_scale_100(negatives: str, m_count: int) -> None:
    gen = torch.Generator().manual_seed(m_count)
    raw = [torch.randn(16, 8, generator=gen, requires_grad=True) for _ in range(m_count)]
    raw[1].data[:8] = raw[0].data[:8]  # near-duplicates push logits to the extremes
    scale = torch.tensor(100.0, requires_grad=True)
    loss = symile_loss(
        [F.normalize(r, dim=1) for r in raw], scale, negatives, torch.Generator().manual_seed(0)
    )
    loss.backward()
    assert torch.isfinite(loss)
    for r in raw:
        assert r.grad is not None and torch.isfinite(r.grad).all()
    assert torch.isfinite(scale.grad)


# ---------------------------------------------------------------- the XOR separation


@pytest.mark.parametrize("seed", range(3))
def test_symile_learns_xor_where_pairwise_clip_cannot(seed: int) -> None:
    result = run_symile_xor(n_train=2000, n_test=500, bits=5, epochs=10, seed=seed, progress=False)
    assert result["symile_acc"] >= 0.9, result
    assert result["clip_acc"] <= 0.6, result
