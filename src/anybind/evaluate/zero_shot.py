"""Zero-shot classification: nearest class-prompt embedding (CLIP, arXiv:2103.00020 §3.1.4).

Class embeddings are the normalised mean of the normalised embeddings of every prompt template
filled with the class name (prompt ensembling).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def zero_shot(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    class_embeddings: torch.Tensor,
    class_names: list[str] | None = None,
) -> dict[str, object]:
    """embeddings (N, D) unit-norm, labels (N,) in [0, C), class_embeddings (C, D) unit-norm."""
    keep = labels >= 0
    embeddings, labels = embeddings[keep], labels[keep]
    c = class_embeddings.shape[0]
    scores = embeddings @ class_embeddings.T  # (N, C)
    k = min(5, c)
    # ties go to the lower class index (torch.topk promises no order among equal scores)
    topk = torch.sort(scores, dim=1, descending=True, stable=True).indices[:, :k]  # (N, k)
    top1 = (topk[:, 0] == labels).float()
    topk_hit = (topk == labels[:, None]).any(dim=1).float()
    names = class_names or [str(i) for i in range(c)]
    per_class = {}
    for i, name in enumerate(names):
        sel = labels == i
        if bool(sel.any()):
            per_class[name] = top1[sel].mean().item()
    confusion = torch.zeros(c, c, dtype=torch.long)
    confusion.index_put_((labels, topk[:, 0]), torch.ones_like(labels), accumulate=True)
    return {
        "top1": top1.mean().item(),
        f"top{k}": topk_hit.mean().item(),
        "per_class_recall": per_class,
        "n": int(labels.shape[0]),
        "confusion": confusion.tolist(),
    }


def ensemble(prompt_embeddings: torch.Tensor) -> torch.Tensor:
    """(C, T, D) prompt embeddings → (C, D) unit-norm class embeddings."""
    return F.normalize(F.normalize(prompt_embeddings, dim=-1).mean(dim=1), dim=-1)
