"""Exact contrastive losses that never hold the N×N logits: tiled forward and backward.

(One file on purpose: the three autograd functions — InfoNCE, its row block for many processes,
and the sigmoid loss — share the tile workspace and the online log-sum-exp helpers below, and
read best side by side against the equations.)

The symmetric InfoNCE of `anybind.objectives.infonce.info_nce` needs, for logits L = s·A·Bᵀ,

* the row log-sum-exps r_i = log Σ_j exp L_ij and the column ones c_j = log Σ_i exp L_ij,
* the positive terms Σ_ij T_ij·L_ij with T_ij = [g_i = g_j] / |g_i|.

Both log-sum-exps are reductions that can be computed *online*, block by block, carrying a running
value and merging each new block with log(e^x + e^y) — the streaming softmax normaliser used by
FlashAttention (Dao et al. 2022, arXiv:2205.14135; after Milakov & Gimelshein 2018,
arXiv:1805.02867). Contrastive losses are the same computation with the "values" taken away, and
the idea of evaluating them tile by tile, recomputing the logits in the backward pass instead of
storing them, is the "memory-efficient contrastive loss" of e.g. Inf-CL (Cheng et al. 2024,
arXiv:2410.17243). This module is an independent plain-PyTorch implementation of that idea; no
code is copied from those works.

Forward walks the (row tile × column tile) grid once: one GEMM per tile, from which both the row
and the column running log-sum-exps are updated. The positive terms need no tiles at all: since
T_ij is constant over a group, Σ_ij T_ij·L_ij = s·Σ_g (Σ_{i∈g} a_i)·(Σ_{j∈g} b_j) / |g|, an O(N·D)
computation from per-group sums. Backward recomputes each tile's logits, turns them into the two
softmax probabilities with the saved r and c (P_ij = e^{L_ij - r_i} + e^{L_ij - c_j}) and spends
two GEMMs per tile (P·B_tile into dA, Pᵀ·A_tile into dB). The gradient of the scale comes for
free: Σ_ij P_ij·(a_i·b_j) = Σ_i a_i·(P·B)_i. Memory is O(N·D + tile²); the work is 4 GEMMs of
2·N²·D flops (the dense loss needs 3) plus a few elementwise passes over each tile.

Everything reduces in float32 (float64 for float64 inputs); bfloat16/float16 inputs keep their
dtype for the GEMMs. The losses return a float32 (float64) scalar, gradients in the inputs' dtypes.

Also here: the one-direction, row-block version for distributed training
(`tiled_row_info_nce`), and the pairwise sigmoid loss of SigLIP (Zhai et al. 2023,
arXiv:2303.15343), naive (`sigmoid_loss`) and tiled (`tiled_sigmoid_loss`).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

__all__ = ["sigmoid_loss", "tiled_info_nce", "tiled_row_info_nce", "tiled_sigmoid_loss"]

_OUT_DTYPE_MM: dict[tuple[str, torch.dtype], bool] = {}  # does torch.mm(out_dtype=) work here?


def _acc_dtype(*xs: torch.Tensor) -> torch.dtype:
    return torch.float64 if any(x.dtype == torch.float64 for x in xs) else torch.float32


def _mm(x: torch.Tensor, y: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """x @ y with the result in `acc` (for low-precision inputs: fp32 accumulation and output)."""
    if x.dtype == acc:
        return x @ y
    key = (x.device.type, x.dtype)
    if _OUT_DTYPE_MM.get(key, x.is_cuda):
        try:
            out = torch.mm(x, y, out_dtype=acc)
            _OUT_DTYPE_MM[key] = True
            return out
        except (RuntimeError, TypeError, NotImplementedError):
            _OUT_DTYPE_MM[key] = False
    return (x @ y).to(acc)


def _addmm_(out: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> None:
    """out += x @ y, out in the accumulation dtype, x already in y's dtype."""
    if y.dtype == out.dtype:
        out.addmm_(x, y)
    else:
        out.add_(_mm(x, y, out.dtype))


# exp(x) for x < -80 is < 2e-35, below the fp32 resolution of any sum that also holds the max
# term exp(0) = 1. On x86 CPUs denormal results make exp, and the GEMMs that read them, several
# times slower, so there the exponents are floored at -80 — unless the logits are provably too
# narrow to reach it (|s·a·b| ≤ s·max|a|·max|b|), which spares two passes per tile.
_EXP_FLOOR = -80.0


class _Workspace:
    """Two reusable (tile × tile) buffers and the per-tile elementwise steps of one call."""

    def __init__(
        self, rows: int, cols: int, tile: int, acc: torch.dtype, device: torch.device, clamp: bool
    ):
        size = min(tile, rows) * min(tile, cols)
        self.buf = torch.empty(2, size, dtype=acc, device=device)
        self.acc, self.clamp = acc, clamp

    def _view(self, k: int, rows: int, cols: int) -> torch.Tensor:
        return self.buf[k, : rows * cols].view(rows, cols)

    def logits(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """x (r, D) · y (c, D)ᵀ in the accumulation dtype, into buffer 0."""
        if x.dtype != self.acc:
            return _mm(x, y.T, self.acc)
        return torch.mm(x, y.T, out=self._view(0, x.shape[0], y.shape[0]))

    def exp_(self, x: torch.Tensor) -> torch.Tensor:
        """In-place exp of x ≤ 0 (logits minus a max or a log-sum-exp)."""
        if self.clamp:
            x.clamp_min_(_EXP_FLOOR)
        return x.exp_()

    def shifted(self, logits: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """logits - shift into buffer 1 (logits untouched)."""
        if logits.dtype != self.acc or self.buf.device != logits.device:
            return torch.sub(logits, shift)
        return torch.sub(logits, shift, out=self._view(1, *logits.shape))

    def lse(self, logits: torch.Tensor, dim: int, inplace: bool) -> torch.Tensor:
        """log Σ exp of the tile along dim; overwrites logits if inplace."""
        peak = logits.amax(dim, keepdim=True)
        x = logits.sub_(peak) if inplace else self.shifted(logits, peak)
        return self.exp_(x).sum(dim).log_().add_(peak.squeeze(dim))


def _needs_clamp(x_scaled: torch.Tensor, y: torch.Tensor, n_terms: int) -> bool:
    """Whether exp(logit - max or - lse) can go below e^-80 (CPU only; one O(N·D) pass)."""
    if x_scaled.device.type != "cpu" or x_scaled.numel() == 0 or y.numel() == 0:
        return False
    bound = float(x_scaled.float().norm(dim=1).max() * y.float().norm(dim=1).max())
    return not 2 * bound + math.log(n_terms) + 1 < -_EXP_FLOOR


def _dot(x: torch.Tensor, y: torch.Tensor, acc: torch.dtype) -> torch.Tensor:
    """Σ x ⊙ y over all elements, in acc, without an (N, D) temporary for acc inputs."""
    return torch.dot(x.reshape(-1).to(acc), y.reshape(-1).to(acc))


def _scale_tensor(scale: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor:
    if not isinstance(scale, torch.Tensor):
        scale = torch.tensor(float(scale))
    return scale.to(like.device)


def _spans(n: int, tile: int) -> list[tuple[int, int]]:
    return [(i, min(i + tile, n)) for i in range(0, n, tile)]


def _check_tile(tile: int) -> None:
    if tile < 1:
        raise ValueError(f"tile must be ≥ 1, got {tile}")


def _group_index(groups: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Compact group index per sample and the size of each group (O(N); syncs on CUDA)."""
    if groups.shape != (n,):
        raise ValueError(f"groups must have shape ({n},), got {tuple(groups.shape)}")
    _, inv, counts = torch.unique(groups, return_inverse=True, return_counts=True)
    return inv, counts


def _group_sums(
    x: torch.Tensor, inv: torch.Tensor, n_groups: int, acc: torch.dtype
) -> torch.Tensor:
    return x.new_zeros(n_groups, x.shape[1], dtype=acc).index_add_(0, inv, x.to(acc))


def _group_means(
    x: torch.Tensor, inv: torch.Tensor | None, counts: torch.Tensor | None, acc: torch.dtype
) -> torch.Tensor:
    """Per sample, the mean of x over the sample's group (x itself without groups)."""
    if inv is None:
        return x.to(acc)
    c = counts.to(acc)[:, None]
    return (_group_sums(x, inv, c.shape[0], acc) / c)[inv]


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"a and b must be paired (N, D) tensors, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.dtype != b.dtype or not a.is_floating_point():
        raise ValueError(f"a and b must share one floating dtype, got {a.dtype} and {b.dtype}")


def _no_autocast(device: torch.device):
    """The tiles run in the inputs' own dtypes (and accumulate in fp32), not autocast's."""
    return torch.autocast(device_type=device.type, enabled=False)


# --------------------------------------------------------------------------- symmetric InfoNCE


class _TiledInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, scale, inv, counts, tile):
        n = a.shape[0]
        acc = _acc_dtype(a, b)
        s = scale.detach().to(acc)
        row_lse = a.new_empty(n, dtype=acc)
        col_lse = a.new_full((n,), float("-inf"), dtype=acc)
        a_s = a * s  # (s·a)·bᵀ, as info_nce computes it
        clamp = _needs_clamp(a_s, b, n)
        ws = _Workspace(n, n, tile, acc, a.device, clamp)
        spans = _spans(n, tile)
        for r0, r1 in spans:
            a_t = a_s[r0:r1]
            run = a.new_full((r1 - r0,), float("-inf"), dtype=acc)
            for c0, c1 in spans:
                logits = ws.logits(a_t, b[c0:c1])
                col_lse[c0:c1] = torch.logaddexp(col_lse[c0:c1], ws.lse(logits, 0, inplace=False))
                run = torch.logaddexp(run, ws.lse(logits, 1, inplace=True))
            row_lse[r0:r1] = run
        # positive terms Σ_ij T_ij a_i·b_j (without the scale), from per-group sums
        if inv is None:
            pos = _dot(a, b, acc)
        else:
            sa = _group_sums(a, inv, counts.shape[0], acc)
            sb = _group_sums(b, inv, counts.shape[0], acc)
            pos = ((sa * sb).sum(dim=1) / counts.to(acc)).sum()
        ctx.save_for_backward(a, b, s, row_lse, col_lse, inv, counts)
        ctx.tile, ctx.scale_dtype, ctx.clamp = tile, scale.dtype, clamp
        return (row_lse.sum() + col_lse.sum() - 2 * s * pos) / (2 * n)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b, s, row_lse, col_lse, inv, counts = ctx.saved_tensors
        need_a, need_b, need_s = ctx.needs_input_grad[:3]
        n, acc = a.shape[0], s.dtype
        want_da, want_db = need_a or need_s, need_b
        # raw accumulators: da_raw_i = Σ_j P_ij b_j, db_raw_j = Σ_i P_ij a_i
        da_raw = a.new_zeros(a.shape, dtype=acc) if want_da else None
        db_raw = b.new_zeros(b.shape, dtype=acc) if want_db else None
        spans = _spans(n, ctx.tile)
        if want_da or want_db:
            a_s = a * s
            ws = _Workspace(n, n, ctx.tile, acc, a.device, ctx.clamp)
            for r0, r1 in spans:
                a_t = a[r0:r1]
                r = row_lse[r0:r1, None]
                for c0, c1 in spans:
                    b_t = b[c0:c1]
                    logits = ws.logits(a_s[r0:r1], b_t)
                    # P = row softmax + column softmax of the tile
                    p = ws.exp_(ws.shifted(logits, r))
                    p.add_(ws.exp_(logits.sub_(col_lse[None, c0:c1])))
                    p = p.to(a.dtype)
                    if want_da:
                        _addmm_(da_raw[r0:r1], p, b_t)
                    if want_db:
                        _addmm_(db_raw[c0:c1], p.T, a_t)
        # positive terms: d/da_i Σ T_ij a_i·b_j = mean of b over i's group (and symmetrically)
        coef = grad.to(acc) / (2 * n)
        da = db = ds = None
        if want_da:
            da_raw.sub_(_group_means(b, inv, counts, acc), alpha=2)
            if need_s:
                ds = (coef * _dot(a, da_raw, acc)).to(ctx.scale_dtype)
            if need_a:
                da = (da_raw.mul_(coef * s)).to(a.dtype)
        if want_db:
            db_raw.sub_(_group_means(a, inv, counts, acc), alpha=2)
            db = db_raw.mul_(coef * s).to(b.dtype)
        return da, db, ds, None, None, None


def tiled_info_nce(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    groups: torch.Tensor | None = None,
    tile: int = 1024,
) -> torch.Tensor:
    """`info_nce(a, b, scale, groups)` computed tile by tile: same value and gradients, but memory
    O(N·D + tile²) instead of O(N²) in both forward and backward.

    a, b: (N, D) paired rows (float32/float64/bfloat16/float16, same dtype); scale: the logit
    scale, a 0-d tensor (may require grad) or a float; groups: (N,) ids for multi-positive
    targets, or None for positives on the diagonal. Returns a 0-d float32 (float64) loss.
    """
    _check_tile(tile)
    _check_pair(a, b)
    scale_t = _scale_tensor(scale, a)
    inv = counts = None
    if groups is not None:
        inv, counts = _group_index(groups.to(a.device), a.shape[0])
    with _no_autocast(a.device):
        return _TiledInfoNCE.apply(a, b, scale_t, inv, counts, tile)


# --------------------------------------------------------------------- one direction, row block


class _TiledRowInfoNCE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, scale, q_inv, k_inv, counts, offset, tile):
        n, m = q.shape[0], k.shape[0]
        acc = _acc_dtype(q, k)
        s = scale.detach().to(acc)
        row_lse = q.new_empty(n, dtype=acc)
        q_s = q * s
        clamp = _needs_clamp(q_s, k, m)
        ws = _Workspace(n, m, tile, acc, q.device, clamp)
        col_spans = _spans(m, tile)
        for r0, r1 in _spans(n, tile):
            q_t = q_s[r0:r1]
            run = q.new_full((r1 - r0,), float("-inf"), dtype=acc)
            for c0, c1 in col_spans:
                logits = ws.logits(q_t, k[c0:c1])
                run = torch.logaddexp(run, ws.lse(logits, 1, inplace=True))
            row_lse[r0:r1] = run
        if q_inv is None:
            pos = _dot(q, k[offset : offset + n], acc)
        else:  # Σ_i q_i · (mean of the keys in i's group); 0/0 → nan for a row without positives
            sk = _group_sums(k, k_inv, counts.shape[0], acc)
            pos = (q.to(acc) * (sk / counts.to(acc)[:, None])[q_inv]).sum()
        ctx.save_for_backward(q, k, s, row_lse, q_inv, k_inv, counts)
        ctx.offset, ctx.tile, ctx.scale_dtype, ctx.clamp = offset, tile, scale.dtype, clamp
        return row_lse.sum() - s * pos

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q, k, s, row_lse, q_inv, k_inv, counts = ctx.saved_tensors
        need_q, need_k, need_s = ctx.needs_input_grad[:3]
        n, acc, offset = q.shape[0], s.dtype, ctx.offset
        want_dq, want_dk = need_q or need_s, need_k
        dq_raw = q.new_zeros(q.shape, dtype=acc) if want_dq else None
        dk_raw = k.new_zeros(k.shape, dtype=acc) if want_dk else None
        if want_dq or want_dk:
            q_s = q * s
            ws = _Workspace(n, k.shape[0], ctx.tile, acc, q.device, ctx.clamp)
            col_spans = _spans(k.shape[0], ctx.tile)
            for r0, r1 in _spans(n, ctx.tile):
                q_t = q[r0:r1]
                r = row_lse[r0:r1, None]
                for c0, c1 in col_spans:
                    k_t = k[c0:c1]
                    p = ws.exp_(ws.logits(q_s[r0:r1], k_t).sub_(r)).to(q.dtype)
                    if want_dq:
                        _addmm_(dq_raw[r0:r1], p, k_t)
                    if want_dk:
                        _addmm_(dk_raw[c0:c1], p.T, q_t)
        coef = grad.to(acc)
        dq = dk = ds = None
        if q_inv is None:
            if want_dq:
                dq_raw.sub_(k[offset : offset + n].to(acc))
            if want_dk:
                dk_raw[offset : offset + n].sub_(q.to(acc))
        else:
            c = counts.to(acc)[:, None]
            if want_dq:
                dq_raw.sub_((_group_sums(k, k_inv, c.shape[0], acc) / c)[q_inv])
            if want_dk:  # key j is a positive, weight 1/count, of every row i in its group
                dk_raw.sub_((_group_sums(q, q_inv, c.shape[0], acc) / c)[k_inv])
        if want_dq:
            if need_s:
                ds = (coef * _dot(q, dq_raw, acc)).to(ctx.scale_dtype)
            if need_q:
                dq = dq_raw.mul_(coef * s).to(q.dtype)
        if want_dk:
            dk = dk_raw.mul_(coef * s).to(k.dtype)
        return dq, dk, ds, None, None, None, None, None


def tiled_row_info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    scale: torch.Tensor | float,
    q_groups: torch.Tensor | None = None,
    k_groups: torch.Tensor | None = None,
    positive_offset: int = 0,
    tile: int = 1024,
) -> torch.Tensor:
    """One direction of InfoNCE for a block of query rows against all keys, tiled.

    q: (n, D) local queries; k: (M, D) all keys (e.g. gathered from every rank). Positives of row
    i: the keys j with k_groups[j] == q_groups[i] (target uniform over them), or, without groups,
    the single key j = i + positive_offset. Returns the SUM over the n rows of the soft
    cross-entropy -Σ_j t_ij log softmax_j(s·q_i·k_j), so that the caller divides by the global
    row count. A row without any positive key gives nan. Memory O((n + M)·D + tile²).
    """
    _check_tile(tile)
    if q.ndim != 2 or k.ndim != 2 or q.shape[1] != k.shape[1]:
        raise ValueError(f"q (n, D) and k (M, D) expected, got {tuple(q.shape)}, {tuple(k.shape)}")
    if q.dtype != k.dtype or not q.is_floating_point():
        raise ValueError(f"q and k must share one floating dtype, got {q.dtype} and {k.dtype}")
    n, m = q.shape[0], k.shape[0]
    scale_t = _scale_tensor(scale, q)
    q_inv = k_inv = counts = None
    if (q_groups is None) != (k_groups is None):
        raise ValueError("give both q_groups and k_groups, or neither")
    if q_groups is None:
        if not 0 <= positive_offset <= m - n:
            raise ValueError(
                f"positives i + {positive_offset} fall outside the {m} keys for {n} rows"
            )
    else:
        if q_groups.shape != (n,) or k_groups.shape != (m,):
            raise ValueError("q_groups must be (n,) and k_groups (M,)")
        both = torch.cat([q_groups.to(q.device), k_groups.to(q.device)])
        uniq, inv = torch.unique(both, return_inverse=True)
        q_inv, k_inv = inv[:n], inv[n:]
        counts = torch.bincount(k_inv, minlength=uniq.shape[0])  # keys per group
    with _no_autocast(q.device):
        return _TiledRowInfoNCE.apply(q, k, scale_t, q_inv, k_inv, counts, positive_offset, tile)


# ---------------------------------------------------------------------------------- SigLIP


def _signs(groups: torch.Tensor | None, n: int, device: torch.device) -> torch.Tensor:
    """z_ij = +1 for positive pairs (same group, or the diagonal), -1 otherwise."""
    if groups is None:
        same = torch.eye(n, dtype=torch.bool, device=device)
    else:
        groups = groups.to(device)
        same = groups[:, None] == groups[None, :]
    return same.float() * 2 - 1


def sigmoid_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    groups: torch.Tensor | None = None,
) -> torch.Tensor:
    """SigLIP's pairwise sigmoid loss (Zhai et al. 2023): -(1/N) Σ_i Σ_j log σ(z_ij(s·a_i·b_j + β))
    with z_ij = +1 for positive pairs and -1 otherwise. Naive: materialises the N×N logits."""
    logits = scale * a @ b.T + bias
    z = _signs(groups, a.shape[0], a.device).to(logits.dtype)
    return -F.logsigmoid(z * logits).sum() / a.shape[0]


def _signed_logits(ws, as_t, b_t, bias, same, diagonal):
    """Tile of z·((s·a)·bᵀ + β), in place on the GEMM output (as_t = s·a rows)."""
    x = ws.logits(as_t, b_t).add_(bias)
    if same is not None:
        return torch.where(same, x, x.neg())
    x.neg_()
    if diagonal:
        x.diagonal().neg_()
    return x


class _TiledSigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, a, b, scale, bias, groups, tile):
        n = a.shape[0]
        acc = _acc_dtype(a, b)
        s, beta = scale.detach().to(acc), bias.detach().to(acc)
        total = a.new_zeros((), dtype=acc)
        a_s = a * s
        ws = _Workspace(n, n, tile, acc, a.device, clamp=False)
        spans = _spans(n, tile)
        for r0, r1 in spans:
            for c0, c1 in spans:
                same = None if groups is None else groups[r0:r1, None] == groups[None, c0:c1]
                x = _signed_logits(ws, a_s[r0:r1], b[c0:c1], beta, same, r0 == c0)
                total -= F.logsigmoid(x).sum()
        ctx.save_for_backward(a, b, s, beta, groups)
        ctx.tile, ctx.scale_dtype, ctx.bias_dtype = tile, scale.dtype, bias.dtype
        return total / n

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        a, b, s, beta, groups = ctx.saved_tensors
        need_a, need_b, need_s, need_bias = ctx.needs_input_grad[:4]
        n, acc = a.shape[0], s.dtype
        want_da, want_db = need_a or need_s, need_b
        da_raw = a.new_zeros(a.shape, dtype=acc) if want_da else None
        db_raw = b.new_zeros(b.shape, dtype=acc) if want_db else None
        dbias = a.new_zeros((), dtype=acc)
        a_s = a * s
        ws = _Workspace(n, n, ctx.tile, acc, a.device, clamp=False)
        spans = _spans(n, ctx.tile)
        for r0, r1 in spans:
            a_t = a[r0:r1]
            for c0, c1 in spans:
                b_t = b[c0:c1]
                same = None if groups is None else groups[r0:r1, None] == groups[None, c0:c1]
                x = _signed_logits(ws, a_s[r0:r1], b_t, beta, same, r0 == c0)
                # d/dlogit of -log σ(z·logit) = -z·σ(-z·logit)
                g = x.neg_().sigmoid_()
                if same is not None:
                    g = torch.where(same, g.neg(), g)
                elif r0 == c0:
                    g.diagonal().neg_()
                if need_bias:
                    dbias += g.sum()
                g = g.to(a.dtype)
                if want_da:
                    _addmm_(da_raw[r0:r1], g, b_t)
                if want_db:
                    _addmm_(db_raw[c0:c1], g.T, a_t)
        coef = grad.to(acc) / n
        da = db = ds = db_ = None
        if want_da:
            if need_s:
                ds = (coef * _dot(a, da_raw, acc)).to(ctx.scale_dtype)
            if need_a:
                da = da_raw.mul_(coef * s).to(a.dtype)
        if want_db:
            db = db_raw.mul_(coef * s).to(b.dtype)
        if need_bias:
            db_ = (coef * dbias).to(ctx.bias_dtype)
        return da, db, ds, db_, None, None


def tiled_sigmoid_loss(
    a: torch.Tensor,
    b: torch.Tensor,
    scale: torch.Tensor | float,
    bias: torch.Tensor | float,
    groups: torch.Tensor | None = None,
    tile: int = 1024,
) -> torch.Tensor:
    """`sigmoid_loss(a, b, scale, bias, groups)` tile by tile: same value and gradients (for a,
    b, scale and bias), memory O(N·D + tile²). Returns a 0-d float32 (float64) loss."""
    _check_tile(tile)
    _check_pair(a, b)
    if groups is not None:
        if groups.shape != (a.shape[0],):
            raise ValueError(f"groups must have shape ({a.shape[0]},)")
        groups = groups.to(a.device)
    with _no_autocast(a.device):
        return _TiledSigmoid.apply(
            a, b, _scale_tensor(scale, a), _scale_tensor(bias, a), groups, tile
        )
