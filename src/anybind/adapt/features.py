"""Embedding target inputs, in batches, without gradients: with one tower, or for a modality
computed from towers (the fusion's joint embedding, a predicted one)."""

from __future__ import annotations

import torch

from anybind.adapt.views import modality_tensor
from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError
from anybind.space.model import Space, Tower


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


def embed_data(
    space: Space,
    data: MultiModalDataset,
    modality: str,
    *,
    views: int = 0,
    seed: int = 0,
    batch_size: int = 512,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Every sample's embedding of `modality` plus `views` augmented copies (each present
    modality's `augment`): ((1 + views) · N, D) and the index of each row's sample."""
    if modality in space.towers:
        tower = space.towers[modality]
        return embed_with_views(tower, modality_tensor(data, modality), views, seed)
    torch.manual_seed(seed)
    parts = [derived_embeddings(space, data, modality, batch_size, augment=a)
             for a in [False] + [True] * views]  # fmt: skip
    return torch.cat(parts), torch.arange(len(data)).repeat(1 + views)


@torch.no_grad()
def derived_embeddings(
    space: Space, data: MultiModalDataset, modality: str, batch_size: int, *, augment: bool
) -> torch.Tensor:
    """(N, D): the towers on each sample's present modalities, then `modality` from them."""
    was_training = space.training
    space.eval()
    device = next(space.parameters()).device
    out = []
    for start in range(0, len(data), batch_size):
        batch = data.batch(range(start, min(start + batch_size, len(data))))
        for name, tower in space.towers.items():
            if augment and name in batch:
                batch[name] = tower.modality.augment(batch[name])
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        features = space(batch)
        masks = {name: batch[f"{name}_mask"] for name in features}
        derived = space.derived(features, masks).get(modality)
        if derived is None or not bool(derived[1].all()):
            inputs = " or ".join(space.derived_inputs(modality))
            raise AnybindError(f"every adaptation sample of '{modality}' needs {inputs}")
        out.append(derived[0].float().cpu())
    space.train(was_training)
    return torch.cat(out) if out else torch.zeros(0, space.config.space.dim)
