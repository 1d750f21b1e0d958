"""Fusion: one joint embedding per sample from whichever of its modalities are present.

A fusion module takes the unit-norm embeddings of the fused modalities (B, D) each, with a
presence mask per modality (B,), and returns a unit-norm joint embedding (B, D) in the same
space for every row that holds at least one of them (rows with none get zeros and are masked
out by the caller).

- `mean`: the normalised mean of the present embeddings (no parameters): with one modality
  present it is that modality's embedding.
- `transformer`: the present embeddings as tokens, each plus a learned modality-type embedding,
  through `layers` pre-norm transformer layers that attend over present tokens only (absent
  ones are a key-padding mask); the mean of the present outputs goes through a linear map
  initialised at zero and is added to the mean of the present embeddings. So training starts
  from `mean` and learns only what improves on it.

Modality dropout (training only, the global torch RNG, so a resumed step draws the same) hides
each present modality of a row with its configured probability, never all of a row's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anybind.registry import Registry


class Fusion(nn.Module):
    """Base of the fusion modules: `forward(embeddings, present)` → (B, D)."""

    def __init__(self, modalities: list[str], dim: int):
        super().__init__()
        self.modalities = list(modalities)
        self.dim = dim

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]):
        raise NotImplementedError

    def stacked(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens (B, M, D) (zeros where absent) and a bool presence mask (B, M)."""
        ref = next(iter(embeddings.values()))
        b = ref.shape[0]
        tokens, mask = [], []
        for m in self.modalities:
            e = embeddings.get(m)
            p = present.get(m)
            if e is None or p is None:
                e, p = (
                    ref.new_zeros(b, self.dim),
                    torch.zeros(b, dtype=torch.bool, device=ref.device),
                )
            tokens.append(e * p[:, None].to(e.dtype))
            mask.append(p.bool())
        return torch.stack(tokens, dim=1), torch.stack(mask, dim=1)


def present_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, M, D), (B, M) → the mean over present tokens (zeros for a row with none)."""
    weight = mask.to(tokens.dtype)[..., None]
    return (tokens * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1.0)


FUSIONS: Registry[type[Fusion]] = Registry("fusion type")


@FUSIONS.register("mean")
class MeanFusion(Fusion):
    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]):
        tokens, mask = self.stacked(embeddings, present)
        return F.normalize(present_mean(tokens, mask), dim=-1)


@FUSIONS.register("transformer")
class TransformerFusion(Fusion):
    def __init__(self, modalities: list[str], dim: int, *, layers: int = 1, heads: int = 4):
        super().__init__(modalities, dim)
        self.type_embedding = nn.Parameter(torch.zeros(len(modalities), dim))
        nn.init.normal_(self.type_embedding, std=0.02)
        layer = nn.TransformerEncoderLayer(
            dim, heads, dim_feedforward=2 * dim, dropout=0.0, activation="gelu",
            batch_first=True, norm_first=True,
        )  # fmt: skip
        self.body = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]):
        tokens, mask = self.stacked(embeddings, present)
        any_present = mask.any(dim=1)
        # a row with nothing present attends to its first (zero) token rather than to nothing
        attend = mask | ~any_present[:, None] & (torch.arange(mask.shape[1]) == 0)[None]
        h = self.body(tokens + self.type_embedding[None], src_key_padding_mask=~attend)
        delta = self.out(present_mean(h, mask))
        return F.normalize(present_mean(tokens, mask) + delta, dim=-1)


def drop_modalities(
    present: dict[str, torch.Tensor], rates: dict[str, float]
) -> dict[str, torch.Tensor]:
    """Hide each present modality of a row with its rate (global torch RNG); a row keeps at
    least one of its present modalities: when every one was drawn to go, a random one stays."""
    names = list(present)
    if not names or not any(rates.get(m, 0.0) for m in names):
        return present
    mask = torch.stack([present[m].bool() for m in names], dim=1)  # (B, M)
    p = torch.tensor([rates.get(m, 0.0) for m in names], device=mask.device)
    keep = (torch.rand(mask.shape, device=mask.device) >= p[None]) & mask
    emptied = ~keep.any(dim=1) & mask.any(dim=1)
    if bool(emptied.any()):
        # one present modality of each emptied row, drawn uniformly
        scores = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
        pick = F.one_hot(scores.argmax(dim=1), len(names)).bool()
        keep = keep | (pick & emptied[:, None])
    return {m: keep[:, i] for i, m in enumerate(names)}


def build_fusion(kind: str, modalities: list[str], dim: int, layers: int, heads: int) -> Fusion:
    cls = FUSIONS.get(kind, key="fusion.type")
    if cls is TransformerFusion:
        return TransformerFusion(modalities, dim, layers=layers, heads=heads)
    return cls(modalities, dim)
