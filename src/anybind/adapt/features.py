"""Embedding target inputs with one tower, in batches, without gradients."""

from __future__ import annotations

import torch

from anybind.space.model import Tower


@torch.no_grad()
def embed_inputs(tower: Tower, inputs: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    """(N, ...) preprocessed inputs → (N, D) unit-norm embeddings on CPU (tower in eval mode)."""
    was_training = tower.training
    tower.eval()
    device = next(tower.parameters()).device
    out = [
        tower(inputs[i : i + batch_size].to(device)).float().cpu()
        for i in range(0, inputs.shape[0], batch_size)
    ]
    tower.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, 0)


def embed_with_views(
    tower: Tower, inputs: torch.Tensor, views: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Embeddings of `inputs` plus `views` augmented copies of each (the modality's `augment`):
    ((1 + views) · N, D) and the index of the source sample of each row."""
    torch.manual_seed(seed)
    parts = [embed_inputs(tower, inputs)]
    for _ in range(views):
        parts.append(embed_inputs(tower, tower.modality.augment(inputs)))
    source = torch.arange(inputs.shape[0]).repeat(1 + views)
    return torch.cat(parts), source
