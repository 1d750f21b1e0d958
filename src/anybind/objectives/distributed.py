"""InfoNCE across data-parallel ranks: every rank's rows are contrasted against the global batch.

Why gather *with* gradient. With data parallelism each rank embeds only its own rows, but
contrastive learning wants every row scored against the negatives of the whole global batch. So
each rank all-gathers the embeddings of all ranks. A plain ``dist.all_gather`` is not
differentiable: the gathered copies of other ranks' rows are constants, so the gradient that rank
r's loss sends to rank s's rows (as negatives / keys in r's logits) would be lost, and each rank
would train its encoders only from its own rows' side of the similarity matrix. The gradient of
the global loss w.r.t. a row owned by rank s is the sum, over all ranks r, of what r's loss sends to
that row; ``gather_with_grad`` carries that sum back in its backward.

The open_clip "local loss" idea (``ClipLoss(local_loss=True, gather_with_grad=True)``), in words:
instead of every rank computing the full N×N global similarity matrix (redundant work, identical
on every rank), each rank computes only the n_local × N block whose rows are its own samples, once
with its images as queries against all gathered texts and once with its texts as queries against
all gathered images. The targets of that block are shifted by the rank's row offset in the global
batch. The union of the blocks over ranks is exactly the global matrix (row-wise for one direction,
and column-wise for the other), so the losses add up to the global loss; the gradient w.r.t. the
gathered keys is routed home by the gather's backward. Memory and compute per rank drop from
O(N²) to O(n_local · N). Here the blocks are additionally normalised by the *global* row count,
not by n_local, so that the decomposition is exact even when ranks hold unequal numbers of rows.

Scaling convention (see ``distributed_info_nce``): rank r's share is
    share_r = [row_loss(a_r, b_all) + row_loss(b_r, a_all)] / (2 · N_global)
so ``Σ_r share_r`` is the single-process symmetric ``info_nce`` of the concatenated batch, and
``Σ_r ∂share_r/∂θ`` is its gradient. DDP *averages* parameter gradients over ranks, so by default
(``ranks_reduce="mean"``) the returned loss is ``world_size · share_r``: DDP's average then yields
exactly the single-process gradient, and the mean of the returned losses over ranks is the
single-process loss (what you log after an ``all_reduce(AVG)``). With ``ranks_reduce="sum"`` the
share itself is returned: for callers that sum gradients / losses over ranks themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, Protocol

import torch
import torch.distributed as dist
from torch import Tensor


def _is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _gather_sizes(n: int, device: torch.device, group=None) -> list[int]:
    """Rows on every rank of ``group``, in rank order."""
    world = dist.get_world_size(group)
    mine = torch.tensor([n], dtype=torch.long, device=device)
    sizes = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(sizes, mine, group=group)
    return [int(s.item()) for s in sizes]


def _all_gather_varlen(x: Tensor, sizes: list[int], group=None) -> Tensor:
    """Concatenation in rank order of every rank's ``x`` (unequal dim-0 sizes allowed).

    Collectives need equal shapes, so every rank pads its tensor to the largest size, gathers,
    and the padding is stripped again.
    """
    longest = max(sizes)
    x = x.contiguous()
    if x.shape[0] < longest:
        pad = x.new_zeros((longest - x.shape[0], *x.shape[1:]))
        x = torch.cat([x, pad], dim=0)
    parts = [torch.empty_like(x) for _ in sizes]
    dist.all_gather(parts, x, group=group)
    return torch.cat([p[:s] for p, s in zip(parts, sizes, strict=True)], dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """Forward: all-gather rows (rank order). Backward: sum the gradient over ranks, keep my rows.

    Why all-reduce(sum) and not just slicing my rows from my own incoming gradient: every rank's
    loss uses all N gathered rows (as keys), so the row owned by rank s receives gradient from
    the loss of *every* rank r. The gradient of the global loss Σ_r loss_r w.r.t. that row is
    Σ_r (grad of loss_r w.r.t. gathered row) — a sum over ranks, followed by taking rank s's
    slice. That is exactly a reduce-scatter(sum); it is implemented as all-reduce(sum) + slice,
    which gives the same numbers, works with unequal slices without padding and on the gloo
    backend (which has no reduce_scatter), at twice the communication of a reduce-scatter.
    """

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], offset: int, group) -> Tensor:
        ctx.offset, ctx.rows, ctx.group = offset, x.shape[0], group
        return _all_gather_varlen(x, sizes, group)

    @staticmethod
    def backward(ctx, grad: Tensor):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        return grad[ctx.offset : ctx.offset + ctx.rows], None, None, None


def gather_with_grad(x: Tensor, group=None) -> tuple[Tensor, int]:
    """All-gather ``x`` along dim 0 from every rank of ``group``, differentiably.

    Ranks may hold different numbers of rows (including zero). Returns ``(x_all, offset)``:
    the rows of all ranks concatenated in rank order, and where this rank's rows start in it
    (``x_all[offset : offset + len(x)]`` is ``x``). Gradients reaching ``x_all`` on every rank
    are summed across ranks and each rank receives the slice of its own rows (see
    ``_GatherWithGrad``). Every rank must call this (and, if any rank backpropagates through
    the result, every rank must) — it is a collective. Without an initialised process group it
    is the identity: ``(x, 0)``.
    """
    if not _is_distributed():
        return x, 0
    sizes = _gather_sizes(x.shape[0], x.device, group)
    offset = sum(sizes[: dist.get_rank(group)])
    return _GatherWithGrad.apply(x, sizes, offset, group), offset


def gather_no_grad(x: Tensor, group=None) -> tuple[Tensor, int]:
    """``gather_with_grad`` without autograd (e.g. integer group ids)."""
    if not _is_distributed():
        return x, 0
    sizes = _gather_sizes(x.shape[0], x.device, group)
    offset = sum(sizes[: dist.get_rank(group)])
    return _all_gather_varlen(x.detach(), sizes, group), offset


class RowLoss(Protocol):
    def __call__(
        self,
        q: Tensor,
        k: Tensor,
        scale: Tensor,
        q_groups: Tensor | None = None,
        k_groups: Tensor | None = None,
        positive_offset: int = 0,
    ) -> Tensor: ...


def row_info_nce_sum(
    q: Tensor,
    k: Tensor,
    scale: Tensor,
    q_groups: Tensor | None = None,
    k_groups: Tensor | None = None,
    positive_offset: int = 0,
) -> Tensor:
    """Σ over rows i of q (n, D) of the soft cross-entropy of logits ``scale · q_i · kᵀ`` (M keys).

    The target of row i is uniform over its positives: keys j with ``k_groups[j] ==
    q_groups[i]``, or ``j == i + positive_offset`` (the paired key). Dense (n, M) logits — the
    reference for a tiled implementation.
    """
    if (q_groups is None) != (k_groups is None):
        raise ValueError("pass both q_groups and k_groups, or neither")
    n, m = q.shape[0], k.shape[0]
    if positive_offset < 0 or positive_offset + n > m:
        raise ValueError(f"rows {positive_offset}..{positive_offset + n} outside {m} keys")
    logits = scale * q @ k.T  # (n, M)
    rows = torch.arange(n, device=q.device)
    positive = torch.zeros(n, m, dtype=torch.bool, device=q.device)
    positive[rows, rows + positive_offset] = True
    if q_groups is not None:
        positive |= q_groups[:, None] == k_groups[None, :]
    targets = positive.to(logits.dtype)
    targets = targets / targets.sum(dim=1, keepdim=True)
    return -(targets * logits.log_softmax(dim=1)).sum()


def distributed_info_nce(
    a_local: Tensor,
    b_local: Tensor,
    scale: Tensor,
    groups_local: Tensor | None = None,
    row_loss: RowLoss | Callable[..., Tensor] = row_info_nce_sum,
    ranks_reduce: Literal["mean", "sum"] = "mean",
    group=None,
) -> Tensor:
    """Symmetric (multi-positive) InfoNCE of this rank's pairs against the global batch.

    a_local, b_local: (n_local, D) paired rows of this rank (n_local may differ across ranks);
    groups_local: (n_local,) group ids for multi-positive targets (same semantics as
    ``info_nce``). ``row_loss(q, k, scale, q_groups=, k_groups=, positive_offset=)`` returns the
    summed one-direction row loss (``row_info_nce_sum``, or a memory-tiled equivalent).

    With N = Σ_r n_r the global row count and offset this rank's first global row,
        share = [row_loss(a_local, b_all, offset) + row_loss(b_local, a_all, offset)] / (2N),
    and Σ_r share_r = ``info_nce(a_all, b_all, scale, groups_all)``; the gradient of Σ_r share_r
    is the single-process gradient.

    ranks_reduce — how per-rank results are combined across ranks afterwards:
      "mean" (default, for DDP, which averages gradients): returns ``world_size · share``, so
        DDP's averaged parameter gradients equal the single-process gradients and the mean of
        the returned values over ranks is the single-process loss. Note that the gradient of a
        *local activation* (a_local.grad) is then world_size × its single-process value; DDP's
        averaging of parameter gradients undoes that factor.
      "sum": returns ``share``; sum losses and (parameter) gradients over ranks yourself.
    Without an initialised process group both equal ``info_nce`` on the local batch.
    Every rank must call this and backpropagate through the result (collectives).
    """
    if ranks_reduce not in ("mean", "sum"):
        raise ValueError(f"ranks_reduce must be 'mean' or 'sum', not {ranks_reduce!r}")
    if a_local.shape[0] != b_local.shape[0]:
        raise ValueError(f"a has {a_local.shape[0]} rows, b has {b_local.shape[0]}")
    a_all, offset = gather_with_grad(a_local, group)
    b_all, _ = gather_with_grad(b_local, group)
    groups_all = gather_no_grad(groups_local, group)[0] if groups_local is not None else None
    total_rows = a_all.shape[0]
    loss = row_loss(
        a_local, b_all, scale, q_groups=groups_local, k_groups=groups_all, positive_offset=offset
    ) + row_loss(
        b_local, a_all, scale, q_groups=groups_local, k_groups=groups_all, positive_offset=offset
    )
    loss = loss / (2 * total_rows)
    if ranks_reduce == "mean" and _is_distributed():
        loss = loss * dist.get_world_size(group)
    return loss
