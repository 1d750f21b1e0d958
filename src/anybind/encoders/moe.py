"""A routed mixture of feed-forward experts (V-MoE / LIMoE) and its auxiliary losses.

Every token goes to its `top_k` experts by a learned linear router: p = softmax(router(x)), the
k largest probabilities choose the experts and weight their outputs (unnormalised, as V-MoE
and LIMoE, so the task loss trains the router too). No capacity limit: every token is
processed (dropless), so a collapsed router costs accuracy but never drops tokens.

The auxiliary losses, each over the tokens of one modality in one layer (LIMoE computes them per
modality), for probabilities p (N tokens × E experts) and assignments:

- `load` (Switch Transformer): E · Σ_e f_e · P_e, with f_e the fraction of the N·k assignments
  that go to expert e and P_e the mean router probability of e; 1 at a uniform load;
- `local_entropy` (LIMoE): the mean over tokens of the entropy of p_i; minimising it makes each
  token's routing decisive;
- `global_entropy` (LIMoE): max(0, τ − H(mean_i p_i)); minimising it spreads the modality's
  tokens over the experts, up to a threshold τ (default log E: all experts).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


class FeedForward(nn.Sequential):
    """LayerNorm → Linear → GELU → Dropout → Linear: one transformer feed-forward block."""

    def __init__(self, width: int, hidden: int, dropout: float, *, norm: bool = True):
        super().__init__(
            nn.LayerNorm(width) if norm else nn.Identity(),
            nn.Linear(width, hidden),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, width),
        )


@dataclass
class Routing:
    """One routed layer's decisions over N tokens: router probabilities (N, E) and the chosen
    experts (N, k)."""

    probs: torch.Tensor
    chosen: torch.Tensor

    @property
    def experts(self) -> int:
        return self.probs.shape[1]


class RoutedExperts(nn.Module):
    """(N, width) tokens → (N, width): Σ over each token's top-k experts of p_e · expert_e(x)."""

    def __init__(self, width: int, hidden: int, experts: int, top_k: int, dropout: float):
        super().__init__()
        if top_k > experts:
            raise ValueError(f"top_k ({top_k}) exceeds the number of experts ({experts})")
        self.top_k = top_k
        self.norm = nn.LayerNorm(width)
        self.router = nn.Linear(width, experts, bias=False)
        nn.init.normal_(self.router.weight, std=0.02)
        self.experts = nn.ModuleList(
            FeedForward(width, hidden, dropout, norm=False) for _ in range(experts)
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Routing]:
        h = self.norm(x)
        probs = self.router(h).float().softmax(dim=-1)  # (N, E)
        gates, chosen = probs.topk(self.top_k, dim=-1)  # (N, k)
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            rows, slot = (chosen == e).nonzero(as_tuple=True)
            if len(rows):
                y = expert(h[rows]) * gates[rows, slot, None].to(h.dtype)
                out = out.index_add(0, rows, y)
        return out, Routing(probs, chosen)


def expert_counts(routing: Routing) -> torch.Tensor:
    """Assignments per expert (E,), over all k choices of every token."""
    return torch.bincount(routing.chosen.flatten(), minlength=routing.experts)


def load_loss(routing: Routing) -> torch.Tensor:
    """Switch's load-balancing loss E · Σ_e f_e · P_e (f: assignment fractions, not
    differentiable; P: mean router probabilities)."""
    f = expert_counts(routing).to(routing.probs.dtype) / routing.chosen.numel()
    return routing.experts * (f * routing.probs.mean(dim=0)).sum()


def entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * p.clamp_min(1e-12).log()).sum(dim=-1)


def local_entropy_loss(routing: Routing) -> torch.Tensor:
    return entropy(routing.probs).mean()


def global_entropy_loss(routing: Routing, threshold: float | None = None) -> torch.Tensor:
    tau = math.log(routing.experts) if threshold is None else threshold
    return (tau - entropy(routing.probs.mean(dim=0))).clamp_min(0.0)
