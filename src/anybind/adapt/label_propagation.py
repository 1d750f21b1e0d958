"""Pseudo-labels by label propagation over the target's own neighbourhood graph (ReCLIP, after
Zhou et al. 2004 and Iscen et al. 2019).

1. Remove the direction all class text embeddings share: with T (D, C) = U S Vᵀ, project onto
   U[:, 1:] (drops the class-agnostic, modality-gap direction) and re-normalise.
2. Graph over the C class embeddings (the only labelled nodes) and the N target embeddings:
   affinity (cos + 1)/2, zero diagonal, top-k per row, symmetrised, D^-1/2 W D^-1/2.
3. Solve (I − αW) F = Y with Y one-hot on the class nodes; pseudo-label = argmax F.
scipy's sparse conjugate gradient solves it (the system is symmetric positive definite); the graph
has k non-zeros per row so memory is O(N·k).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as sla
import torch
import torch.nn.functional as F


def remove_shared_direction(
    embeddings: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    u, _, _ = torch.linalg.svd(classes.T.double(), full_matrices=False)  # (D, C)
    basis = u[:, 1:]
    project = basis @ basis.T
    return (
        F.normalize(embeddings.double() @ project, dim=-1).float(),
        F.normalize(classes.double() @ project, dim=-1).float(),
    )


def knn_graph(nodes: torch.Tensor, k: int, chunk: int = 2048) -> sp.csr_matrix:
    """Symmetrically normalised top-k affinity graph over unit-norm `nodes` (N, D)."""
    n = nodes.shape[0]
    k = min(k, n - 1)
    rows, cols, vals = [], [], []
    for start in range(0, n, chunk):
        aff = (nodes[start : start + chunk] @ nodes.T + 1) / 2
        idx = torch.arange(start, min(start + chunk, n))
        aff[idx - start, idx] = 0.0
        v, i = aff.topk(k, dim=1)
        rows.append(idx.repeat_interleave(k).numpy())
        cols.append(i.flatten().numpy())
        vals.append(v.flatten().double().numpy())
    w = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    w = (w + w.T) / 2
    d = np.asarray(w.sum(axis=1)).flatten()
    d_inv = sp.diags(1.0 / np.sqrt(np.maximum(d, 1e-12)))
    return (d_inv @ w @ d_inv).tocsr()


def propagate_labels(
    embeddings: torch.Tensor,
    classes: torch.Tensor,
    *,
    k: int = 20,
    alpha: float = 0.99,
    remove_shared: bool = True,
    max_iter: int = 50,
    labelled: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(N, D) target embeddings, (C, D) class embeddings → (N, C) propagated class scores.

    `labelled` = (embeddings (L, D), labels (L,)) adds labelled target samples as seed nodes next
    to the class embeddings (semi-supervised propagation)."""
    n_extra = 0 if labelled is None else labelled[0].shape[0]
    if labelled is not None:
        embeddings = torch.cat([labelled[0], embeddings])
    if remove_shared and classes.shape[0] > 1:
        embeddings, classes = remove_shared_direction(embeddings, classes)
    c = classes.shape[0]
    w = knn_graph(torch.cat([classes, embeddings]).float(), k)
    system = sp.identity(w.shape[0], format="csr") - alpha * w
    seeds = np.zeros((w.shape[0], c))
    seeds[np.arange(c), np.arange(c)] = 1.0
    if labelled is not None:
        seeds[c + np.arange(n_extra), labelled[1].numpy()] = 1.0
    scores = np.zeros((w.shape[0], c))
    for j in range(c):
        scores[:, j], _ = sla.cg(system, seeds[:, j], rtol=1e-6, maxiter=max_iter)
    return torch.as_tensor(scores[c + n_extra :], dtype=torch.float32)
