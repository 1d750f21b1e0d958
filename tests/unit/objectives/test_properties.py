"""Property tests (hypothesis) over every loss: batch-permutation invariance, equality of the
tiled, naive and distributed paths on random shapes, finite gradients at extreme temperatures."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from anybind.objectives import cwcl_loss, info_nce
from anybind.objectives.distributed import distributed_info_nce, row_info_nce_sum
from anybind.objectives.symile import symile_loss
from anybind.objectives.tiled import (
    sigmoid_loss,
    tiled_info_nce,
    tiled_row_info_nce,
    tiled_sigmoid_loss,
)

FAST = settings(max_examples=25, deadline=None)


@st.composite
def batches(draw, max_n: int = 24):
    n = draw(st.integers(1, max_n))
    d = draw(st.integers(1, 8))
    seed = draw(st.integers(0, 2**31 - 1))
    n_groups = draw(st.integers(1, n + 1))
    with_groups = draw(st.booleans())
    gen = torch.Generator().manual_seed(seed)
    a = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    b = F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)
    groups = torch.randint(0, n_groups, (n,), generator=gen) if with_groups else None
    perm = torch.randperm(n, generator=gen)
    scale = draw(st.floats(0.5, 30.0))
    return a, b, groups, perm, scale


def losses(a, b, groups, scale):
    s = torch.tensor(scale, dtype=a.dtype)
    return {
        "info_nce": info_nce(a, b, s, groups),
        "tiled_info_nce": tiled_info_nce(a, b, s, groups, tile=5),
        "sigmoid": sigmoid_loss(a, b, s, -2.0, groups),
        "tiled_sigmoid": tiled_sigmoid_loss(a, b, s, -2.0, groups, tile=5),
        "cwcl": cwcl_loss(a, b, s),
        "distributed(1 process)": distributed_info_nce(a, b, s, groups),
    }


@FAST
@given(batches())
def test_every_loss_is_invariant_to_permuting_the_batch(batch):
    a, b, groups, perm, scale = batch
    before = losses(a, b, groups, scale)
    after = losses(a[perm], b[perm], groups[perm] if groups is not None else None, scale)
    for name in before:
        torch.testing.assert_close(after[name], before[name], rtol=1e-9, atol=1e-9, msg=name)


@FAST
@given(batches(), st.integers(1, 30))
def test_tiled_and_distributed_paths_equal_the_naive_loss(batch, tile):
    a, b, groups, _, scale = batch
    a, b = a.clone().requires_grad_(), b.clone().requires_grad_()
    s = torch.tensor(scale, dtype=a.dtype, requires_grad=True)
    pairs = {
        "infonce": (
            lambda: info_nce(a, b, s, groups),
            lambda: tiled_info_nce(a, b, s, groups, tile=tile),
        ),
        "sigmoid": (
            lambda: sigmoid_loss(a, b, s, -3.0, groups),
            lambda: tiled_sigmoid_loss(a, b, s, -3.0, groups, tile=tile),
        ),
        "distributed": (
            lambda: info_nce(a, b, s, groups),
            lambda: distributed_info_nce(a, b, s, groups),
        ),
    }
    for name, (naive, fast) in pairs.items():
        want = naive()
        grads_want = torch.autograd.grad(want, (a, b, s))
        got = fast()
        grads_got = torch.autograd.grad(got, (a, b, s))
        torch.testing.assert_close(got, want, rtol=1e-9, atol=1e-10, msg=name)
        for g, w in zip(grads_got, grads_want, strict=True):
            torch.testing.assert_close(g, w, rtol=1e-7, atol=1e-9, msg=name)


@FAST
@given(batches(max_n=12), st.integers(1, 12))
def test_row_blocks_add_up_to_one_direction(batch, split):
    a, b, groups, _, scale = batch
    n = a.shape[0]
    split = min(split, n)
    s = torch.tensor(scale, dtype=a.dtype)
    whole = row_info_nce_sum(a, b, s, groups, groups)
    parts = tiled_row_info_nce(
        a[:split],
        b,
        s,
        groups[:split] if groups is not None else None,
        groups,
        positive_offset=0,
        tile=3,
    ) + tiled_row_info_nce(
        a[split:],
        b,
        s,
        groups[split:] if groups is not None else None,
        groups,
        positive_offset=split,
        tile=3,
    )
    torch.testing.assert_close(parts, whole, rtol=1e-9, atol=1e-9)


@settings(max_examples=10, deadline=None)
@given(st.integers(2, 16), st.integers(0, 1000))
def test_gradients_stay_finite_at_extreme_temperatures(n, seed):
    gen = torch.Generator().manual_seed(seed)
    base = F.normalize(torch.randn(1, 8, generator=gen), dim=1)
    # nearly identical vectors: the hardest case for the softmax / sigmoid at scale 100
    a = F.normalize(base + 1e-4 * torch.randn(n, 8, generator=gen), dim=1).requires_grad_()
    b = F.normalize(base + 1e-4 * torch.randn(n, 8, generator=gen), dim=1).requires_grad_()
    c = F.normalize(base + 1e-4 * torch.randn(n, 8, generator=gen), dim=1).requires_grad_()
    for scale in (100.0, 1e-3):
        s = torch.tensor(scale, requires_grad=True)
        for loss in (
            info_nce(a, b, s),
            tiled_info_nce(a, b, s, tile=3),
            sigmoid_loss(a, b, s, -10.0),
            tiled_sigmoid_loss(a, b, s, -10.0, tile=3),
            cwcl_loss(a, b, s),
            symile_loss([a, b, c], s, negatives="n_squared"),
        ):
            grads = torch.autograd.grad(loss, (a, b, s), allow_unused=True)
            assert torch.isfinite(loss)
            assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 5), st.integers(0, 1000))
def test_symile_with_all_negatives_is_permutation_invariant(n, seed):
    gen = torch.Generator().manual_seed(seed)
    xs = [
        F.normalize(torch.randn(n, 4, generator=gen, dtype=torch.float64), dim=1) for _ in range(3)
    ]
    perm = torch.randperm(n, generator=gen)
    before = symile_loss(xs, 5.0, negatives="n_squared")
    after = symile_loss([x[perm] for x in xs], 5.0, negatives="n_squared")
    torch.testing.assert_close(after, before, rtol=1e-9, atol=1e-9)
