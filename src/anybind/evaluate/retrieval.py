"""Retrieval recall@K: the fraction of queries with at least one match among their K nearest.

Keys are ranked by score, ties broken by key index (the lower index first), so R@k does not
depend on which `ks` are asked for, nor on how the work is chunked. Nothing larger than a
(chunk × chunk) block of scores is ever held: the rank of a query's first match is computed in
two passes over key chunks (open_clip's chunked retrieval, with the ties made deterministic):

1. its best match: the matching key with the highest (score, −index);
2. its rank: the number of keys ranked before that match, all of them non-matching by
   definition — keys with a higher score, or the same score and a lower index.
"""

from __future__ import annotations

import torch

NO_MATCH = torch.iinfo(torch.long).max


def first_match_ranks(
    queries: torch.Tensor,
    keys: torch.Tensor,
    *,
    query_ids: torch.Tensor,
    key_ids: torch.Tensor,
    chunk: int = 4096,
) -> torch.Tensor:
    """(Nq,) 0-based rank of each query's first matching key; NO_MATCH when none matches."""
    nq, nk = queries.shape[0], keys.shape[0]
    ranks = torch.full((nq,), NO_MATCH, dtype=torch.long)
    for qs in range(0, nq, chunk):
        q, qid = queries[qs : qs + chunk], query_ids[qs : qs + chunk]
        best = torch.full((q.shape[0],), float("-inf"), dtype=torch.float64)
        best_at = torch.full((q.shape[0],), nk, dtype=torch.long)
        blocks = []
        for ks in range(0, nk, chunk):
            scores = (q @ keys[ks : ks + chunk].T).double()  # (n, m)
            match = key_ids[ks : ks + chunk][None, :] == qid[:, None]
            masked = scores.masked_fill(~match, float("-inf"))
            value, at = masked.max(dim=1)  # max returns the first index of a tie
            better = value > best  # strictly: an earlier chunk wins a tie
            best = torch.where(better, value, best)
            best_at = torch.where(better, at + ks, best_at)
            blocks.append(ks)
        found = best_at < nk
        count = torch.zeros(q.shape[0], dtype=torch.long)
        for ks in blocks:
            scores = (q @ keys[ks : ks + chunk].T).double()
            index = torch.arange(ks, ks + scores.shape[1])[None, :]
            before = (scores > best[:, None]) | (
                (scores == best[:, None]) & (index < best_at[:, None])
            )
            count += before.sum(dim=1)
        ranks[qs : qs + chunk] = torch.where(found, count, torch.full_like(count, NO_MATCH))
    return ranks


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
    Ties are broken by key index. Memory is O(chunk²) beyond the inputs."""
    ranks = first_match_ranks(queries, keys, query_ids=query_ids, key_ids=key_ids, chunk=chunk)
    n = max(1, queries.shape[0])
    return {f"R@{k}": int((ranks < k).sum()) / n for k in ks}
