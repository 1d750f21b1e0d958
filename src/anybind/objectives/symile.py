"""Symile: a higher-order contrastive objective for any number M ≥ 2 of modalities.

Saporta et al. 2024, "Contrasting with Symile: Simple Model-Agnostic Representation Learning
for Unlimited Modalities", arXiv:2411.01053 (reference code: rajesh-lab/symile, MIT).

Score. The multilinear inner product (MIP) of one embedding per modality,
⟨r_1, …, r_M⟩ = Σ_d Π_m r_m[d], times a scale s. For M = 2 it is the dot product, so Symile is
CLIP. For M ≥ 3 it can express dependencies that only show up jointly: with c = a XOR b every pair
is independent (pairwise CLIP learns nothing), yet ±1 codes give ⟨a, b, c⟩ = d exactly when
c = a ⊕ b bitwise.

Loss. Each modality m takes a turn as the anchor. Row i's positive is the true tuple
(x_1[i], …, x_M[i]). Its negatives keep the anchor x_m[i] and pair it with non-anchor tuples that
(approximately) come from the product of the marginals, Π_{k≠m} p(x_k). Per anchor this is an
InfoNCE lower bound, TC ≥ log N − L_m. The loss is the cross-entropy over the candidates with the
true tuple as the target, averaged over the anchors.

Negatives, ``negatives=``:

* ``"n"`` (O(N) candidates per row, the paper's default). The candidate set is built from the
  batch. Candidate j pairs the first non-anchor modality's row j with the other non-anchor
  modalities at rows π_k(j), where each π_k is an independent uniform random permutation
  (``shuffle=True``). Candidate i is the true tuple. So the non-anchor modalities of a negative are
  independent draws from their marginals, as in the paper's bound.

  This departs from rajesh-lab/symile in one way. The reference also shuffles the *first*
  non-anchor modality, then overwrites the diagonal with the positive. With one fewer permutation
  here, the negatives have the same distribution but (i) a negative can never re-use the
  positive's own rows (in the reference, the positive's tuple comes back as a false negative with
  probability ≈ 1/N per row, and for M = 2 almost surely), and (ii) M = 2 is *exactly* CLIP's
  symmetric InfoNCE. With ``shuffle=False`` the candidates are the batch's aligned tuples, so
  negatives come from the joint p(x_{−m}) rather than the product of marginals. The objective then
  bounds Σ_m I(x_m; x_{−m}) / M instead of TC. For M = 2 the two are identical.

* ``"n_squared"``: every one of the N^(M−1) combinations of non-anchor rows is a candidate
  (N^(M−1) − 1 negatives). The cost grows exponentially with M, so above ``max_candidates`` it
  raises a ValueError. Unlike the reference, gradients flow through the non-anchor factors too (the
  reference detaches them in its general-M path).

Missing modalities, in :class:`Symile` (``missing=``):

* ``"mask"``: a sample lacking any modality of the tuple is dropped from every term: its row is
  neither a query nor a negative. The loss equals the loss on the complete-case subset.
* ``"learned"``: a missing modality's embedding is replaced by a learned per-modality vector (an
  ``nn.Parameter``, unit-normalised when ``normalize_missing``), so "missing" becomes an input
  state, as in the paper. Such rows stay in the batch as negatives. For anchor m, only rows that
  *observe* m act as queries, because a row whose anchor is the shared placeholder has nothing to
  anchor on (the reference keeps those rows). Rows with no modality present are dropped.

``groups`` (multi-positive targets) is accepted for interface compatibility but not used. A Symile
target is one exact tuple, and under shuffling the "same group" relation is not defined for a mixed
candidate.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import reduce
from operator import mul
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from anybind.objectives.base import OBJECTIVES, Objective

if TYPE_CHECKING:
    from anybind.config.schema import Config, SymileConfig

NEGATIVES = ("n", "n_squared")
MISSING = ("mask", "learned")

#: Default cap on N^(M−1) for negatives="n_squared" (e.g. N = 256 at M = 3).
MAX_CANDIDATES = 65_536


def mip(*xs: torch.Tensor) -> torch.Tensor:
    """Multilinear inner product Σ_d Π_m x_m[..., d] over the last dimension.

    With (N, D) inputs this gives (N,), one MIP per aligned row. Leading dimensions broadcast, so
    batched forms come for free, e.g. ``mip(a[:, None], b[:, None], c[None])`` → (N, C).
    """
    if len(xs) < 2:
        raise ValueError(f"mip needs at least two tensors, got {len(xs)}")
    return reduce(mul, xs).sum(dim=-1)


def mip_scores(queries: Sequence[torch.Tensor], candidates: torch.Tensor) -> torch.Tensor:
    """(B, C) MIPs between each row's query tuple (each (B, D)) and every candidate (C, D).

    This is the zero-shot scorer: to predict one modality from all the others, score each
    candidate embedding c by ⟨q_1[b], …, q_{M−1}[b], c⟩ and take the argmax.
    """
    if len(queries) < 1:
        raise ValueError("mip_scores needs at least one query modality")
    return reduce(mul, queries) @ candidates.T


def _check(features: Sequence[torch.Tensor], negatives: str) -> tuple[int, int]:
    if negatives not in NEGATIVES:
        raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
    if len(features) < 2:
        raise ValueError(f"Symile needs at least two modalities, got {len(features)}")
    shapes = {tuple(f.shape) for f in features}
    if len(shapes) != 1 or len(features[0].shape) != 2:
        raise ValueError(f"features must all be (N, D) with one shape, got {sorted(shapes)}")
    n, d = features[0].shape
    return n, d


def _logits_n(
    anchor: torch.Tensor, others: list[torch.Tensor], perms: Sequence[torch.Tensor] | None
) -> torch.Tensor:
    """(N, N) unscaled logits; column j is candidate j, and column i of row i is the true tuple."""
    n = anchor.shape[0]
    cand = others[0]
    for k, other in enumerate(others[1:]):
        cand = cand * (other if perms is None else other[perms[k]])
    logits = anchor @ cand.T
    if perms is not None and len(others) > 1:
        positive = mip(anchor, *others)
        eye = torch.eye(n, dtype=torch.bool, device=anchor.device)
        logits = torch.where(eye, positive[:, None], logits)
    return logits


def _logits_n_squared(
    anchor: torch.Tensor, others: list[torch.Tensor], max_candidates: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, N^K) unscaled logits over every combination of non-anchor rows (K = M − 1) and the
    index of each row's true tuple. Candidate (j_1, …, j_K) sits at Σ_k j_k N^(K−1−k)."""
    n, d = anchor.shape
    k = len(others)
    total = n**k
    if total > max_candidates:
        raise ValueError(
            f"negatives='n_squared' would build N^(M-1) = {n}^{k} = {total} candidates per row, "
            f"above max_candidates={max_candidates}; use negatives='n' or a smaller batch"
        )
    cand = None
    for pos, other in enumerate(others):
        shape = [1] * k + [d]
        shape[pos] = n
        term = other.reshape(shape)
        cand = term if cand is None else cand * term
    assert cand is not None
    logits = anchor @ cand.reshape(total, d).T
    stride = sum(n**p for p in range(k))  # index of the aligned tuple (i, i, …, i)
    target = torch.arange(n, device=anchor.device) * stride
    return logits, target


def symile_loss(
    features: Sequence[torch.Tensor],
    scale: torch.Tensor | float,
    negatives: str = "n",
    generator: torch.Generator | None = None,
    *,
    shuffle: bool = True,
    permutations: Sequence[Sequence[torch.Tensor]] | None = None,
    query_masks: Sequence[torch.Tensor] | None = None,
    max_candidates: int = MAX_CANDIDATES,
) -> torch.Tensor:
    """Symile loss over M ≥ 2 aligned (N, D) feature tensors; the mean over anchors of the
    cross-entropy of scale·MIP logits with the true tuple as the target.

    negatives: "n" (O(N) candidates from the batch; see the module docstring) or "n_squared"
      (all N^(M−1) combinations; ValueError above ``max_candidates``).
    generator: RNG for the "n" permutations (global RNG when None).
    shuffle: for "n", permute the non-anchor modalities after the first independently (True, the
      paper's product-of-marginals negatives) or use aligned tuples only (False).
    permutations: for "n", explicit permutations instead of drawing them. ``permutations[m]`` holds
      M − 2 LongTensors (N,), for anchor m's non-anchor modalities after the first, in order.
    query_masks: optional BoolTensor (N,) per modality. For anchor m only rows where it is True are
      queries (all rows stay candidates). An anchor with no query rows is skipped.
    """
    n, _ = _check(features, negatives)
    m_count = len(features)
    if permutations is not None and len(permutations) != m_count:
        raise ValueError(f"permutations needs one entry per anchor ({m_count})")
    losses = []
    for m, anchor in enumerate(features):
        others = [f for j, f in enumerate(features) if j != m]
        rows = None if query_masks is None else query_masks[m].to(anchor.device)
        if rows is not None and not bool(rows.any()):
            continue
        if negatives == "n":
            if permutations is not None:
                perms = [p.to(anchor.device) for p in permutations[m]]
                if len(perms) != m_count - 2:
                    raise ValueError(f"permutations[{m}] needs M - 2 = {m_count - 2} tensors")
            elif shuffle and m_count > 2:
                perms = [
                    torch.randperm(n, generator=generator).to(anchor.device)
                    for _ in range(m_count - 2)
                ]
            else:
                perms = None
            logits = _logits_n(anchor, others, perms)
            target = torch.arange(n, device=anchor.device)
        else:
            logits, target = _logits_n_squared(anchor, others, max_candidates)
        logits = scale * logits
        if rows is not None:
            logits, target = logits[rows], target[rows]
        losses.append(F.cross_entropy(logits, target))
    if not losses:
        return sum(f.sum() for f in features) * 0.0
    return torch.stack(losses).mean()


@OBJECTIVES.register("symile")
class Symile(Objective):
    """The Symile loss over one configured tuple of modalities, as a named loss term.

    modalities: the M ≥ 2 modality names whose joint dependence is contrasted.
    missing: "mask" (complete cases only) or "learned" (a learned per-modality placeholder
      embedding; needs ``dim``). See the module docstring.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        negatives: str = "n",
        missing: str = "mask",
        dim: int | None = None,
        normalize_missing: bool = True,
        shuffle: bool = True,
        max_candidates: int = MAX_CANDIDATES,
        name: str = "symile",
    ):
        super().__init__()
        if len(modalities) < 2 or len(set(modalities)) != len(modalities):
            raise ValueError(f"Symile needs ≥ 2 distinct modalities, got {list(modalities)}")
        if negatives not in NEGATIVES:
            raise ValueError(f"negatives must be one of {NEGATIVES}, got {negatives!r}")
        if missing not in MISSING:
            raise ValueError(f"missing must be one of {MISSING}, got {missing!r}")
        self.modalities = tuple(modalities)
        self.negatives = negatives
        self.missing = missing
        self.normalize_missing = normalize_missing
        self.shuffle = shuffle
        self.max_candidates = max_candidates
        self.name = name
        if missing == "learned":
            if dim is None:
                raise ValueError("missing='learned' needs the embedding dim")
            self.missing_embeddings = nn.ParameterDict(
                {m: nn.Parameter(torch.randn(dim) / math.sqrt(dim)) for m in self.modalities}
            )

    @classmethod
    def from_config(cls, config: Config) -> Symile:
        obj: SymileConfig = config.objective  # type: ignore[assignment]
        return cls(
            config.symile_modalities(),
            negatives=obj.negatives,
            missing=obj.missing,
            dim=config.space.dim,
        )

    def missing_embedding(self, modality: str) -> torch.Tensor:
        e = self.missing_embeddings[modality]
        return F.normalize(e, dim=0) if self.normalize_missing else e

    def forward(
        self,
        features: dict[str, torch.Tensor],
        masks: dict[str, torch.Tensor],
        groups: torch.Tensor | None,
        scale: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        present = [m for m in self.modalities if m in features]
        if not present:
            return {}
        ref = features[present[0]]
        n = ref.shape[0]
        full = torch.ones(n, dtype=torch.bool, device=ref.device)
        mask = {
            m: (masks[m].to(ref.device) if m in masks else full) if m in features else ~full
            for m in self.modalities
        }
        if self.missing == "mask":
            if len(present) < len(self.modalities):
                return {}
            rows = reduce(torch.logical_and, mask.values())
            if int(rows.sum()) < 2:
                return {}
            feats = [features[m][rows] for m in self.modalities]
            query_masks = None
        else:
            rows = reduce(torch.logical_or, mask.values())
            if int(rows.sum()) < 2:
                return {}
            feats, query_masks = [], []
            for m in self.modalities:
                keep = mask[m][rows]
                filler = self.missing_embedding(m).to(ref.dtype)
                x = features[m][rows] if m in features else filler.expand(int(rows.sum()), -1)
                feats.append(torch.where(keep[:, None], x, filler))
                query_masks.append(keep)
            if not any(bool(q.any()) for q in query_masks):
                return {}
        loss = symile_loss(
            feats,
            scale,
            self.negatives,
            shuffle=self.shuffle,
            query_masks=query_masks,
            max_candidates=self.max_candidates,
        )
        return {f"{self.name}_loss": loss}
