"""Retrieval recall@K: the fraction of queries with at least one match among their K nearest."""

from __future__ import annotations

import torch


def recall_at_k(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    query_ids: torch.Tensor,
    key_ids: torch.Tensor,
    ks: tuple[int, ...] = (1, 5, 10),
    chunk: int = 4096,
) -> dict[str, float]:
    """queries (Nq, D), keys (Nk, D) unit-norm; a key matches a query when their ids are equal.

    Ids are sample indices for paired data, or labels when "same label" counts as a match.
    Ties are broken by key order (torch.topk). Memory is O(chunk × Nk).
    """
    kmax = min(max(ks), keys.shape[0])
    hits = {k: 0 for k in ks}
    for start in range(0, queries.shape[0], chunk):
        q = queries[start : start + chunk]
        top = (q @ keys.T).topk(kmax, dim=1).indices  # (n, kmax)
        match = key_ids[top] == query_ids[start : start + chunk, None]  # (n, kmax)
        # rank of the first match; no match gets a rank no k reaches (k may exceed kmax)
        none = torch.full_like(top[:, 0], max(ks))
        first = torch.where(match.any(1), match.float().argmax(1), none)
        for k in ks:
            hits[k] += int((first < k).sum())
    n = max(1, queries.shape[0])
    return {f"R@{k}": hits[k] / n for k in ks}
