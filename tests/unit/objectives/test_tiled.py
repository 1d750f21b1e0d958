"""Tiled (memory-efficient) contrastive losses equal the dense ones, without N×N tensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from anybind.objectives.infonce import info_nce
from anybind.objectives.tiled import (
    sigmoid_loss,
    tiled_info_nce,
    tiled_row_info_nce,
    tiled_sigmoid_loss,
)

SIZES = [1, 2, 7, 64, 130]
TILES = [1, 16, 64, 1000]


def _unit(n: int, d: int, gen: torch.Generator, dtype=torch.float32) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1).to(dtype)


def _value_and_grads(fn, *inputs: torch.Tensor) -> list[torch.Tensor]:
    leaves = [x.detach().clone().requires_grad_() for x in inputs]
    loss = fn(*leaves)
    loss.backward()
    return [loss.detach()] + [x.grad for x in leaves]


def _assert_same(
    got: list[torch.Tensor], want: list[torch.Tensor], rtol: float = 1e-5, grad_tol: float = 1e-4
) -> None:
    """Loss to rtol (relative), gradients to grad_tol relative to the gradient's magnitude."""
    torch.testing.assert_close(got[0].to(want[0].dtype), want[0], rtol=rtol, atol=1e-6)
    for g, w in zip(got[1:], want[1:], strict=True):
        assert g is not None and g.dtype == w.dtype and g.shape == w.shape
        torch.testing.assert_close(
            g, w, rtol=grad_tol, atol=grad_tol * max(float(w.abs().max()), 1e-3)
        )


def _case(n: int, grouped: bool, seed: int = 0):
    gen = torch.Generator().manual_seed(1000 * n + seed)
    a, b = _unit(n, 8, gen), _unit(n, 8, gen)
    groups = torch.randint(0, max(n // 3, 1), (n,), generator=gen) if grouped else None
    return a, b, groups


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("tile", TILES)
@pytest.mark.parametrize("n", SIZES)
def test_tiled_info_nce_equals_info_nce(n: int, tile: int, grouped: bool) -> None:
    a, b, groups = _case(n, grouped)
    scale = torch.tensor(9.0)
    want = _value_and_grads(lambda a, b, s: info_nce(a, b, s, groups), a, b, scale)
    got = _value_and_grads(lambda a, b, s: tiled_info_nce(a, b, s, groups, tile=tile), a, b, scale)
    _assert_same(got, want)
    assert got[0].dtype == torch.float32 and got[0].ndim == 0


# 130 rows in one-element tiles would be 17k Python-level tiles: slow, and the same code path as
# N=64 with tile=1, so that one combination is left out of the grid (not skipped at run time).
SIGMOID_CASES = [(n, t) for n in SIZES for t in TILES if n * n // (t * t) <= 5000]


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize(("n", "tile"), SIGMOID_CASES)
def test_tiled_sigmoid_loss_equals_sigmoid_loss(n: int, tile: int, grouped: bool) -> None:
    a, b, groups = _case(n, grouped, seed=1)
    scale, bias = torch.tensor(9.0), torch.tensor(-4.0)
    want = _value_and_grads(lambda a, b, s, t: sigmoid_loss(a, b, s, t, groups), a, b, scale, bias)
    got = _value_and_grads(
        lambda a, b, s, t: tiled_sigmoid_loss(a, b, s, t, groups, tile=tile), a, b, scale, bias
    )
    _assert_same(got, want)


def test_sigmoid_loss_is_the_siglip_formula() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 5
    a, b = _unit(n, 4, gen, torch.float64), _unit(n, 4, gen, torch.float64)
    groups = [0, 1, 0, 2, 1]
    s, t = 7.0, -3.0
    total = 0.0
    for i in range(n):
        for j in range(n):
            z = 1.0 if groups[i] == groups[j] else -1.0
            x = z * (s * float(a[i] @ b[j]) + t)
            total += -math.log(1 / (1 + math.exp(-x)))
    got = sigmoid_loss(a, b, torch.tensor(s, dtype=torch.float64), t, torch.tensor(groups))
    assert float(got) == pytest.approx(total / n, rel=1e-12)
    # no groups: positives on the diagonal only
    total = sum(
        -math.log(1 / (1 + math.exp(-(1.0 if i == j else -1.0) * (s * float(a[i] @ b[j]) + t))))
        for i in range(n)
        for j in range(n)
    )
    assert float(sigmoid_loss(a, b, s, t)) == pytest.approx(total / n, rel=1e-12)


def _one_direction(
    q: torch.Tensor, k: torch.Tensor, scale: torch.Tensor, groups: torch.Tensor | None
) -> torch.Tensor:
    """Mean over rows of the row-direction soft cross-entropy, dense (float64 targets)."""
    n = q.shape[0]
    same = (
        torch.eye(n, dtype=q.dtype)
        if groups is None
        else (groups[:, None] == groups[None, :]).to(q.dtype)
    )
    targets = same / same.sum(dim=1, keepdim=True)
    return -(targets * (scale * q @ k.T).log_softmax(dim=1)).sum(dim=1).mean()


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("tile", [1, 5, 64])
def test_row_blocks_sum_to_n_times_the_one_direction_loss(tile: int, grouped: bool) -> None:
    n, split = 23, 9
    a, b, groups = _case(n, grouped, seed=2)
    scale = torch.tensor(6.0)

    def blocks(q, k, s):
        total = q.new_zeros(())
        for lo, hi in ((0, split), (split, n)):
            if groups is None:
                total = total + tiled_row_info_nce(q[lo:hi], k, s, positive_offset=lo, tile=tile)
            else:
                total = total + tiled_row_info_nce(q[lo:hi], k, s, groups[lo:hi], groups, tile=tile)
        return total

    for q, k in ((a, b), (b, a)):  # both directions
        want = _value_and_grads(lambda q, k, s: n * _one_direction(q, k, s, groups), q, k, scale)
        got = _value_and_grads(blocks, q, k, scale)
        _assert_same(got, want)
    # the two directions together are the symmetric loss
    both = (blocks(a, b, scale) + blocks(b, a, scale)) / (2 * n)
    torch.testing.assert_close(both, info_nce(a, b, scale, groups), rtol=1e-5, atol=1e-6)


def test_row_loss_with_more_keys_than_queries_and_unmatched_groups() -> None:
    gen = torch.Generator().manual_seed(4)
    q, k = _unit(4, 6, gen, torch.float64), _unit(10, 6, gen, torch.float64)
    scale = torch.tensor(3.0, dtype=torch.float64)
    logits = scale * q @ k.T
    # diagonal positives at an offset
    want = -(logits.log_softmax(dim=1)[torch.arange(4), torch.arange(4) + 6]).sum()
    got = tiled_row_info_nce(q, k, scale, positive_offset=6, tile=3)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # groups: key groups that no query has, and a query group with three keys
    q_groups = torch.tensor([7, 1, 7, 3])
    k_groups = torch.tensor([1, 7, 9, 9, 3, 7, 7, 2, 2, 2])
    same = (q_groups[:, None] == k_groups[None, :]).double()
    want = -((same / same.sum(1, keepdim=True)) * logits.log_softmax(dim=1)).sum()
    got = tiled_row_info_nce(q, k, scale, q_groups, k_groups, tile=4)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError):
        tiled_row_info_nce(q, k, scale, positive_offset=7)
    with pytest.raises(ValueError):
        tiled_row_info_nce(q, k, scale, q_groups=q_groups)


def _info_nce_f64(a, b, scale, groups):
    """info_nce with float64 targets (info_nce builds them in float32)."""
    n = a.shape[0]
    same = (
        torch.eye(n, dtype=a.dtype)
        if groups is None
        else (groups[:, None] == groups[None, :]).to(a.dtype)
    )
    t = same / same.sum(dim=1, keepdim=True)
    logits = scale * a @ b.T
    return (
        -(t * logits.log_softmax(1)).sum(1).mean() - (t.T * logits.log_softmax(0)).sum(0).mean()
    ) / 2


@pytest.mark.parametrize("grouped", [False, True])
def test_float64_at_tight_tolerance(grouped: bool) -> None:
    gen = torch.Generator().manual_seed(5)
    n = 37
    a = torch.randn(n, 6, generator=gen, dtype=torch.float64)  # not unit norm: wide logits
    b = torch.randn(n, 6, generator=gen, dtype=torch.float64)
    groups = torch.randint(0, 9, (n,), generator=gen) if grouped else None
    scale = torch.tensor(4.0, dtype=torch.float64)
    want = _value_and_grads(lambda a, b, s: _info_nce_f64(a, b, s, groups), a, b, scale)
    got = _value_and_grads(lambda a, b, s: tiled_info_nce(a, b, s, groups, tile=8), a, b, scale)
    _assert_same(got, want, rtol=1e-12, grad_tol=1e-11)
    assert got[0].dtype == torch.float64
    bias = torch.tensor(-2.0, dtype=torch.float64)
    want = _value_and_grads(lambda a, b, s, t: sigmoid_loss(a, b, s, t, groups), a, b, scale, bias)
    got = _value_and_grads(
        lambda a, b, s, t: tiled_sigmoid_loss(a, b, s, t, groups, tile=8), a, b, scale, bias
    )
    _assert_same(got, want, rtol=1e-12, grad_tol=1e-11)


class _LargestOutput(TorchDispatchMode):
    """Records the largest tensor any aten op returns, forward and backward."""

    def __init__(self) -> None:
        super().__init__()
        self.largest = 0
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops.add(func.overloadpacket.__name__)
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_no_n_by_n_tensor_is_ever_allocated() -> None:
    n, d = 4096, 64
    gen = torch.Generator().manual_seed(6)
    a, b = _unit(n, d, gen).requires_grad_(), _unit(n, d, gen).requires_grad_()
    scale = torch.tensor(10.0, requires_grad=True)
    groups = torch.randint(0, 1000, (n,), generator=gen)
    with _LargestOutput() as seen:
        tiled_info_nce(a, b, scale, groups).backward()
    assert {"mm", "addmm_"} <= seen.ops  # the backward's GEMMs ran under the mode too
    assert seen.largest < n * n / 4, seen.largest
    assert a.grad is not None and b.grad is not None and scale.grad is not None
    m = 1024  # the dense loss does allocate (m, m) tensors: the check can fail
    with _LargestOutput() as dense:
        info_nce(a[:m], b[:m], scale).backward()
    assert dense.largest >= m * m


def test_extreme_temperature_gives_finite_gradients() -> None:
    gen = torch.Generator().manual_seed(7)
    n, d = 50, 16
    base = _unit(1, d, gen)
    a = F.normalize(base + 1e-3 * torch.randn(n, d, generator=gen), dim=1)
    b = F.normalize(base + 1e-3 * torch.randn(n, d, generator=gen), dim=1)
    scale = torch.tensor(100.0)
    for fn in (
        lambda a, b, s: tiled_info_nce(a, b, s, tile=16),
        lambda a, b, s: tiled_sigmoid_loss(a, b, s, -10.0, tile=16),
    ):
        loss, *grads = _value_and_grads(fn, a, b, scale)
        assert torch.isfinite(loss) and all(torch.isfinite(g).all() for g in grads)
    # and a wide logit range (±100: e^-200 underflows) still equals the dense loss
    a, b = _unit(n, d, gen), _unit(n, d, gen)
    b[: n // 2] = -a[: n // 2]
    b[n // 2 :] = a[n // 2 :]
    want = _value_and_grads(info_nce, a, b, scale)
    got = _value_and_grads(lambda a, b, s: tiled_info_nce(a, b, s, tile=16), a, b, scale)
    _assert_same(got, want)
    assert all(torch.isfinite(g).all() for g in got[1:])


@pytest.mark.parametrize("tiled", [tiled_info_nce, tiled_sigmoid_loss])
def test_bfloat16_inputs_accumulate_in_float32(tiled) -> None:
    gen = torch.Generator().manual_seed(8)
    n = 90
    a, b = _unit(n, 32, gen, torch.bfloat16), _unit(n, 32, gen, torch.bfloat16)
    groups = torch.randint(0, 30, (n,), generator=gen)
    scale = torch.tensor(12.0)
    extra = (torch.tensor(-3.0),) if tiled is tiled_sigmoid_loss else ()
    dense = info_nce if tiled is tiled_info_nce else sigmoid_loss
    got = _value_and_grads(
        lambda a, b, s, *e: tiled(a, b, s, *e, groups, tile=32), a, b, scale, *extra
    )
    want = _value_and_grads(
        lambda a, b, s, *e: dense(a, b, s, *e, groups), a.float(), b.float(), scale, *extra
    )
    assert got[0].dtype == torch.float32 and got[1].dtype == got[2].dtype == torch.bfloat16
    torch.testing.assert_close(got[0], want[0], rtol=1e-2, atol=1e-2)
    for g, w in zip(got[1:], want[1:], strict=True):
        torch.testing.assert_close(g.float(), w, rtol=5e-2, atol=5e-2 * float(w.abs().max()))


def test_frozen_inputs_and_a_float_scale() -> None:
    gen = torch.Generator().manual_seed(9)
    a, b = _unit(20, 8, gen), _unit(20, 8, gen)
    b_train = b.clone().requires_grad_()
    tiled_info_nce(a, b_train, 5.0, tile=6).backward()  # only b needs a gradient
    b_ref = b.clone().requires_grad_()
    info_nce(a, b_ref, torch.tensor(5.0)).backward()
    torch.testing.assert_close(b_train.grad, b_ref.grad, rtol=1e-4, atol=1e-6)
    scale = torch.tensor(5.0, requires_grad=True)  # only the scale
    tiled_info_nce(a, b, scale, tile=6).backward()
    s_ref = torch.tensor(5.0, requires_grad=True)
    info_nce(a, b, s_ref).backward()
    torch.testing.assert_close(scale.grad, s_ref.grad, rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError):
        tiled_info_nce(a, b[:5], 5.0)
    with pytest.raises(ValueError):
        tiled_info_nce(a, b, 5.0, tile=0)
