"""Predicting a missing modality's embedding from the present ones (ActionMAE-style).

For each modality m of `modalities`, a small network maps the mean of the other modalities'
present embeddings (B, D) to an estimate of m's embedding, then L2-normalises it (`kind`):

- `mlp`: a residual MLP (LayerNorm → Linear → GELU → Linear, the last initialised at zero)
  added to its input, so it starts as "m's embedding is the others' mean";
- `shift`: a learned constant added to it (the gap between the modalities' regions);
- `codebook`: attention over learned (key, value) prototypes;
- `anchor`: the class posterior against the anchor's class prompts weights per-class values.

Its output is the pseudo-modality `{m}_predicted`: trained against the real m with any
objective, usable as a query ("what would this image sound like") and scored by evaluation
like any modality. Measured on the digits (docs/fusion.md): the sample-wise maps (`mlp`,
`codebook`) fit the synthetic training domain and lose on real data; `anchor` carries over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from anybind.space.fusion import present_mean


def predicted_name(modality: str) -> str:
    return f"{modality}_predicted"


class ResidualMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(dim), nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)
        )
        nn.init.zeros_(self.body[-1].weight)
        nn.init.zeros_(self.body[-1].bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Shift(nn.Module):
    """A learned constant added to the input: what separates two modalities' regions of the
    space (the modality gap), and nothing that depends on the sample."""

    def __init__(self, dim: int):
        super().__init__()
        self.shift = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.shift


class Codebook(nn.Module):
    """Attention over `slots` learned (key, value) pairs: the estimate is the softmax-weighted
    mean of the values, weighted by the input's similarity to the keys (scale 20). It can only
    say "which prototypes does this look like", which carries over a shift of domain better
    than a map of every direction of the input."""

    def __init__(self, dim: int, slots: int):
        super().__init__()
        self.keys = nn.Parameter(F.normalize(torch.randn(slots, dim), dim=-1))
        self.values = nn.Parameter(F.normalize(torch.randn(slots, dim), dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weights = torch.softmax(
            20.0 * F.normalize(x, dim=-1) @ F.normalize(self.keys, dim=-1).T, -1
        )
        return weights @ self.values


class AnchorCodebook(nn.Module):
    """Prediction through the anchor: the input's class posterior against fixed keys (the
    anchor's class-prompt embeddings, prompted as the source modality is), sharpened by a
    learned scale, weights one value per class (the class prompts as the target is prompted;
    learned too with `learn_values`, which fits them to the training domain). The keys never
    move, so a shift of domain in the source changes only how sure the posterior is."""

    def __init__(self, dim: int, classes: int, learn_values: bool = False):
        super().__init__()
        self.register_buffer("keys", torch.zeros(classes, dim))
        self.values = nn.Parameter(torch.zeros(classes, dim), requires_grad=learn_values)
        self.log_scale = nn.Parameter(torch.tensor(4.6))  # e^4.6 ≈ 100

    def set_prompts(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        with torch.no_grad():
            self.keys.copy_(F.normalize(keys, dim=-1))
            self.values.copy_(F.normalize(values, dim=-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = self.log_scale.clamp(0.0, 6.0).exp()
        weights = torch.softmax(scale * F.normalize(x, dim=-1) @ self.keys.T, dim=-1)
        return weights @ self.values


class Predictor(nn.Module):
    def __init__(
        self,
        modalities: list[str],
        dim: int,
        hidden: int,
        kind: str = "mlp",
        classes: int = 0,
        learn_values: bool = False,
    ):
        super().__init__()
        self.modalities = list(modalities)
        self.kind = kind
        self.nets = nn.ModuleDict(
            {m: make_net(kind, dim, hidden, classes, learn_values) for m in modalities}
        )

    def forward(
        self, embeddings: dict[str, torch.Tensor], present: dict[str, torch.Tensor]
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:  # noqa: D102
        """`{m}_predicted` → (estimate (B, D), rows with some other modality present (B,))."""
        out = {}
        for m in self.modalities:
            others = [o for o in self.modalities if o != m and o in embeddings]
            if not others:
                continue
            tokens = torch.stack([embeddings[o] for o in others], dim=1)
            mask = torch.stack([present[o].bool() for o in others], dim=1)
            source = present_mean(tokens * mask[..., None].to(tokens.dtype), mask)
            has = mask.any(dim=1)
            estimate = F.normalize(self.nets[m](source), dim=-1) * has[:, None].to(source.dtype)
            out[predicted_name(m)] = (estimate, has)
        return out


def make_net(kind: str, dim: int, hidden: int, classes: int, learn_values: bool) -> nn.Module:
    if kind == "mlp":
        return ResidualMLP(dim, hidden)
    if kind == "shift":
        return Shift(dim)
    if kind == "anchor":
        return AnchorCodebook(dim, classes, learn_values)
    return Codebook(dim, hidden)
