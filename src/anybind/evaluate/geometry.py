"""Geometry of the space.

- Modality gap (Liang et al. 2022, arXiv:2203.02053): distance between modality centroids.
- Alignment and uniformity (Wang & Isola 2020, arXiv:2005.10242):
  alignment = E ||f(x) − f(y)||² over positive pairs (lower is better);
  uniformity = log E exp(−2 ||f(x) − f(y)||²) over all pairs of one modality (lower is better).
"""

from __future__ import annotations

import torch


def modality_gap(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.mean(dim=0) - b.mean(dim=0)).norm().item()


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """x, y (N, D): row i of x and row i of y are a positive pair."""
    return (x - y).norm(dim=1).pow(alpha).mean().item()


def uniformity(x: torch.Tensor, t: float = 2.0, max_samples: int = 2000, seed: int = 0) -> float:
    if x.shape[0] > max_samples:
        pick = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
        x = x[pick[:max_samples]]
    n = x.shape[0]
    if n < 2:
        return float("nan")
    sq = torch.cdist(x.double(), x.double()).pow(2)
    iu = torch.triu_indices(n, n, offset=1)
    return sq[iu[0], iu[1]].mul(-t).exp().mean().log().item()
