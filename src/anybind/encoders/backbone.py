"""A transformer body over tokens of any modality, with a choice of feed-forward per block.

Pre-norm blocks: x + attention(LN(x)) over the real tokens (a key-padding mask), then
x + FFN(x) on every real token, where the feed-forward is, by `ffn`:

- `shared`: one FFN for every modality (one shared transformer; also the body of a single
  `token_transformer` tower);
- `experts`: one FFN per modality (VLMo's mixture of modality experts, ONE-PEACE): attention is
  shared, each modality's tokens go through its own FFN (and its own LayerNorm);
- `moe`: a routed mixture of `experts` FFNs with top-k routing (LIMoE; encoders/moe.py), shared
  by all modalities, whose router decides per token.

`Backbone.forward(tokens, pad, modality)` runs one modality's batch (towers run one modality at
a time). A routed backbone keeps each routed layer's decisions of the training forwards since
the last `take_routing()` (training reads them for the auxiliary losses), and counts the tokens
each expert received per modality and layer in evaluation since `reset_load()` (evaluation
reports them).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from anybind.encoders.moe import (
    FeedForward,
    RoutedExperts,
    Routing,
    expert_counts,
    global_entropy_loss,
    load_loss,
    local_entropy_loss,
)
from anybind.options import Fraction, Options, Size


class BalanceOptions(Options):
    """Weights of a routed backbone's auxiliary losses (encoders/moe.py); 0 turns one off.

    The defaults are the ones measured to keep every expert within 2× the mean load on the
    digits benchmark (docs/architectures.md); Switch's 0.01 load weight alone did not there.
    """

    load: float = Field(0.05, ge=0)
    local_entropy: float = Field(0.0, ge=0)
    global_entropy: float = Field(0.05, ge=0)
    #: τ of the global entropy loss, in nats (default log(experts): every expert in use)
    threshold: float | None = Field(None, ge=0)


class BackboneOptions(Options):
    ffn: Literal["shared", "experts", "moe"] = "experts"
    width: Size = 64
    layers: Size = 2
    heads: Size = 4
    #: hidden width of each feed-forward (each expert's, for `experts` and `moe`)
    hidden: Size = 256
    dropout: Fraction = 0.0
    #: `moe` only: the number of routed experts and how many each token goes to
    experts: Size = 4
    top_k: Size = 1
    balance: BalanceOptions = Field(default_factory=BalanceOptions)

    @model_validator(mode="after")
    def _sizes(self) -> BackboneOptions:
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        if self.top_k > self.experts:
            raise ValueError(f"top_k ({self.top_k}) exceeds experts ({self.experts})")
        return self


class ModalityExperts(nn.Module):
    """One feed-forward per modality, chosen by the modality's name."""

    def __init__(self, width: int, hidden: int, dropout: float, modalities: list[str]):
        super().__init__()
        self.experts = nn.ModuleDict({m: FeedForward(width, hidden, dropout) for m in modalities})

    def forward(self, x: torch.Tensor, modality: str) -> torch.Tensor:
        return self.experts[modality](x)


class Block(nn.Module):
    def __init__(self, options: BackboneOptions, modalities: list[str]):
        super().__init__()
        o = options
        self.norm = nn.LayerNorm(o.width)
        self.attention = nn.MultiheadAttention(o.width, o.heads, o.dropout, batch_first=True)
        self.ffn: nn.Module
        if o.ffn == "shared":
            self.ffn = FeedForward(o.width, o.hidden, o.dropout)
        elif o.ffn == "experts":
            self.ffn = ModalityExperts(o.width, o.hidden, o.dropout, modalities)
        else:
            self.ffn = RoutedExperts(o.width, o.hidden, o.experts, o.top_k, o.dropout)

    def forward(
        self, x: torch.Tensor, pad: torch.Tensor, modality: str
    ) -> tuple[torch.Tensor, Routing | None]:
        h = self.norm(x)
        x = x + self.attention(h, h, h, key_padding_mask=pad, need_weights=False)[0]
        padded = bool(pad.any())
        # (N, width): the FFN sees the real tokens only
        tokens = x[~pad] if padded else x.flatten(0, 1)
        routing = None
        if isinstance(self.ffn, RoutedExperts):
            delta, routing = self.ffn(tokens)
        elif isinstance(self.ffn, ModalityExperts):
            delta = self.ffn(tokens, modality)
        else:
            delta = self.ffn(tokens)
        if padded:
            return x + torch.zeros_like(x).index_put((~pad,), delta), routing
        return x + delta.view_as(x), routing


class Backbone(nn.Module):
    def __init__(self, options: BackboneOptions, modalities: list[str]):
        super().__init__()
        self.options = options
        self.modalities = list(modalities)
        self.blocks = nn.ModuleList(Block(options, modalities) for _ in range(options.layers))
        self.routed = options.ffn == "moe"
        self._routing: list[tuple[str, int, Routing]] = []
        self._load: dict[tuple[str, int], torch.Tensor] = {}

    def forward(self, x: torch.Tensor, pad: torch.Tensor, modality: str) -> torch.Tensor:
        if self.options.ffn == "experts" and modality not in self.modalities:
            raise ValueError(f"the backbone has no expert for modality '{modality}'")
        for layer, block in enumerate(self.blocks):
            x, routing = block(x, pad, modality)
            if routing is not None:
                self.record(modality, layer, routing)
        return x

    def record(self, modality: str, layer: int, routing: Routing) -> None:
        """Training keeps the routing for the balancing losses; evaluation counts the tokens
        (off the training step: the count is a device-to-host copy per layer)."""
        if self.training:
            if torch.is_grad_enabled():
                self._routing.append((modality, layer, routing))
            return
        counts = expert_counts(routing).detach().cpu()
        key = (modality, layer)
        self._load[key] = self._load.get(key, torch.zeros_like(counts)) + counts

    def take_routing(self) -> list[tuple[str, int, Routing]]:
        """The routing decisions recorded in training since the last call (and forget them)."""
        out, self._routing = self._routing, []
        return out

    def balance_terms(self) -> dict[str, torch.Tensor]:
        """The weighted auxiliary losses of the routing recorded since the last call, each the
        mean over the recorded (modality, layer) routings; empty when nothing was routed."""
        routing = [r for _, _, r in self.take_routing()]
        b = self.options.balance
        losses = {
            "moe_load": (b.load, load_loss),
            "moe_local_entropy": (b.local_entropy, local_entropy_loss),
            "moe_global_entropy": (
                b.global_entropy,
                lambda r: global_entropy_loss(r, b.threshold),
            ),
        }
        return {
            name: weight * torch.stack([loss(r) for r in routing]).mean()
            for name, (weight, loss) in losses.items()
            if weight > 0 and routing
        }

    def reset_load(self) -> None:
        self._load = {}

    def load(self) -> dict[str, list[list[int]]]:
        """Tokens each expert received since `reset_load()`: for every modality of the
        backbone, every layer, (E,) (zeros where none came; the same keys on every rank)."""
        if not self.routed:
            return {}
        zeros = [0] * self.options.experts
        return {
            m: [
                self._load[(m, layer)].tolist() if (m, layer) in self._load else list(zeros)
                for layer in range(self.options.layers)
            ]
            for m in self.modalities
        }
