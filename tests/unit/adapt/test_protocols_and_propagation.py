"""Protocols (splits, shots, base-to-novel) and label propagation against dense references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from anybind.adapt.label_propagation import propagate_labels, remove_shared_direction
from anybind.adapt.protocols import (
    adapt_eval_split,
    base_novel_split,
    few_shot_indices,
    harmonic_mean,
    mean_std,
)
from anybind.errors import AnybindError


def test_adapt_eval_split_is_disjoint_covering_and_stratified() -> None:
    labels = torch.arange(10).repeat_interleave(7)  # 7 per class
    adapt, evaluate = adapt_eval_split(len(labels), labels, eval_fraction=0.3, seed=4)
    assert set(adapt).isdisjoint(evaluate)
    assert sorted([*adapt, *evaluate]) == list(range(70))
    per_class = np.bincount(labels[evaluate].numpy(), minlength=10)
    assert (per_class == 2).all()  # round(7 * 0.3) = 2 in every class
    again = adapt_eval_split(len(labels), labels, eval_fraction=0.3, seed=4)
    assert (again[0] == adapt).all()
    other = adapt_eval_split(len(labels), labels, eval_fraction=0.3, seed=5)
    assert not (other[1] == evaluate).all()
    with pytest.raises(AnybindError):
        adapt_eval_split(10, eval_fraction=1.0)


def test_few_shot_draws_k_per_class_and_depends_on_seed() -> None:
    labels = torch.tensor([0, 1, 2] * 20)
    picked = few_shot_indices(labels, 4, seed=1)
    assert len(set(picked.tolist())) == 12
    assert np.bincount(labels[picked].numpy()).tolist() == [4, 4, 4]
    assert set(few_shot_indices(labels, 4, seed=2).tolist()) != set(picked.tolist())
    only = few_shot_indices(labels, 2, seed=1, classes=[2])
    assert set(labels[only].tolist()) == {2}
    with pytest.raises(AnybindError, match="fewer than 30 shots"):
        few_shot_indices(labels, 30, seed=1)


def test_base_novel_and_harmonic_mean_follow_cocoop() -> None:
    assert base_novel_split(10) == ([0, 1, 2, 3, 4], [5, 6, 7, 8, 9])
    assert base_novel_split(5) == ([0, 1, 2], [3, 4])
    # MaPLe's published average row: base 82.28, novel 75.14 → HM 78.55
    assert harmonic_mean(82.28, 75.14) == pytest.approx(78.55, abs=0.005)
    assert harmonic_mean(0.0, 0.0) == 0.0
    m, s = mean_std([1.0, 2.0, 3.0])
    assert (m, s) == (2.0, 1.0)


def dense_propagation(x: torch.Tensor, t: torch.Tensor, k: int, alpha: float) -> torch.Tensor:
    """Textbook float64 reference: dense graph and a direct solve of (I - αW)F = Y."""
    z = torch.cat([t, x]).double()
    aff = (z @ z.T + 1) / 2
    aff.fill_diagonal_(0)
    v, i = aff.topk(k, dim=1)
    w = torch.zeros_like(aff).scatter_(1, i, v)
    w = (w + w.T) / 2
    d = w.sum(1).rsqrt()
    wn = d[:, None] * w * d[None]
    y = torch.zeros(len(z), len(t), dtype=torch.float64)
    y[: len(t)] = torch.eye(len(t), dtype=torch.float64)
    return torch.linalg.solve(torch.eye(len(z), dtype=torch.float64) - alpha * wn, y)[len(t) :]


def test_label_propagation_matches_a_dense_solve() -> None:
    g = torch.Generator().manual_seed(0)
    centres = F.normalize(torch.randn(4, 12, generator=g), dim=1)
    x = F.normalize(centres.repeat(30, 1) + 0.4 * torch.randn(120, 12, generator=g), dim=1)
    t = F.normalize(centres + 0.2 * torch.randn(4, 12, generator=g), dim=1)
    ours = propagate_labels(x, t, k=8, alpha=0.9, remove_shared=False, max_iter=500)
    ref = dense_propagation(x, t, 8, 0.9).float()
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-6)
    truth = torch.arange(4).repeat(30)
    assert (ours.argmax(1) == truth).float().mean() > 0.8  # chance is 0.25


def test_remove_shared_direction_drops_the_common_component() -> None:
    g = torch.Generator().manual_seed(1)
    shared = F.normalize(torch.randn(16, generator=g), dim=0)
    classes = F.normalize(3 * shared + 0.3 * torch.randn(5, 16, generator=g), dim=1)
    x = F.normalize(torch.randn(7, 16, generator=g), dim=1)
    xp, cp = remove_shared_direction(x, classes)
    u = torch.linalg.svd(classes.T.double(), full_matrices=False)[0][:, 0].float()
    assert (cp @ u).abs().max() < 1e-5 and (xp @ u).abs().max() < 1e-5
    torch.testing.assert_close(cp.norm(dim=1), torch.ones(5))


def test_labelled_seeds_steer_propagation() -> None:
    g = torch.Generator().manual_seed(2)
    centres = F.normalize(torch.randn(3, 8, generator=g), dim=1)
    x = F.normalize(centres.repeat(20, 1) + 0.2 * torch.randn(60, 8, generator=g), dim=1)
    wrong = centres[[1, 2, 0]]  # class embeddings that name every cluster wrongly
    seeds = (x[:9], torch.arange(3).repeat(3))  # 3 correctly labelled samples per class
    plain = propagate_labels(x[9:], wrong, k=6, remove_shared=False).argmax(1)
    seeded = propagate_labels(x[9:], wrong, k=6, remove_shared=False, labelled=seeds).argmax(1)
    truth = torch.arange(3).repeat(20)[9:]
    assert (plain == truth).float().mean() < 0.2
    assert (seeded == truth).float().mean() > 0.6
