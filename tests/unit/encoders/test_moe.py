"""The routed mixture of experts against a per-token float64 loop, its auxiliary losses against
their equations, and the losses' effect on training a router (flip a sign and these fail)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from anybind.encoders.moe import (
    RoutedExperts,
    Routing,
    expert_counts,
    global_entropy_loss,
    load_loss,
    local_entropy_loss,
)
from anybind.evaluate.expert_load import expert_load_report


def naive_moe(layer: RoutedExperts, x: torch.Tensor) -> torch.Tensor:
    """Token by token in float64: Σ over the k most probable experts of p_e · expert_e(LN x)."""
    layer = layer.double()
    out = []
    for token in x.double():
        h = layer.norm(token[None])[0]
        p = torch.softmax(layer.router(h), dim=-1)
        chosen = sorted(range(len(p)), key=lambda e: -p[e].item())[: layer.top_k]
        out.append(sum(p[e] * layer.experts[e](h[None])[0] for e in chosen))
    return torch.stack(out)


@pytest.mark.parametrize("top_k", [1, 2])
def test_routed_experts_equal_a_per_token_loop(top_k):
    torch.manual_seed(0)
    layer = RoutedExperts(width=8, hidden=12, experts=4, top_k=top_k, dropout=0.0).eval()
    nn_init = torch.Generator().manual_seed(1)
    with torch.no_grad():  # a router decisive enough that float32 and float64 pick alike
        layer.router.weight.copy_(torch.randn(layer.router.weight.shape, generator=nn_init))
    x = torch.randn(40, 8)
    out, routing = layer(x)
    assert routing.chosen.shape == (40, top_k)
    expected = naive_moe(layer, x)
    torch.testing.assert_close(out.double(), expected, atol=1e-5, rtol=1e-5)
    assert len(set(routing.chosen.flatten().tolist())) > 1  # a test over several experts


def test_load_loss_is_switch_equation_in_float64():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 5))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    chosen = np.argsort(-p, axis=1)[:, :2]
    f = np.bincount(chosen.ravel(), minlength=5) / chosen.size
    expected = 5 * float((f * p.mean(0)).sum())
    routing = Routing(torch.tensor(p), torch.tensor(chosen))
    assert load_loss(routing).item() == pytest.approx(expected, rel=1e-12)
    assert expert_counts(routing).tolist() == np.bincount(chosen.ravel(), minlength=5).tolist()


def test_load_loss_is_one_at_a_uniform_router_and_e_when_collapsed():
    uniform = Routing(torch.full((8, 4), 0.25), torch.arange(8)[:, None] % 4)
    assert load_loss(uniform).item() == pytest.approx(1.0)
    collapsed = Routing(torch.tensor([[1.0, 0, 0, 0]] * 8), torch.zeros(8, 1, dtype=torch.long))
    assert load_loss(collapsed).item() == pytest.approx(4.0)


def test_entropy_losses_are_limoe_equations():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(30, 4)) * 2
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    routing = Routing(torch.tensor(p), torch.tensor(p.argmax(1))[:, None])
    local = float(np.mean(-(p * np.log(p)).sum(1)))
    mean = p.mean(0)
    h_global = float(-(mean * np.log(mean)).sum())
    assert local_entropy_loss(routing).item() == pytest.approx(local, rel=1e-12)
    assert global_entropy_loss(routing).item() == pytest.approx(math.log(4) - h_global, rel=1e-9)
    # the threshold: no loss once the mean routing's entropy reaches τ
    assert global_entropy_loss(routing, threshold=h_global - 0.01).item() == 0.0


def train_router(sign: float, loss, steps: int = 150) -> tuple[float, float]:
    """Train only the router of a layer on clustered tokens (all in one cluster, so a fresh
    router sends most to one expert) with sign · loss; the max share × experts before and
    after."""
    torch.manual_seed(0)
    layer = RoutedExperts(width=8, hidden=8, experts=4, top_k=1, dropout=0.0)
    g = torch.Generator().manual_seed(2)
    x = torch.randn(256, 8, generator=g) * 0.3 + torch.randn(8, generator=g)
    opt = torch.optim.Adam(layer.router.parameters(), lr=0.01)

    def max_over_mean() -> float:
        counts = expert_counts(layer(x)[1]).double()
        return (counts / counts.sum() * 4).max().item()

    start = max_over_mean()
    for _ in range(steps):
        _, routing = layer(x)
        opt.zero_grad()
        (sign * loss(routing)).backward()
        opt.step()
    return start, max_over_mean()


@pytest.mark.parametrize("loss", [load_loss, global_entropy_loss], ids=["load", "global_entropy"])
def test_balancing_losses_spread_tokens_and_their_negation_collapses_them(loss):
    start, balanced = train_router(+1.0, loss)
    _, collapsed = train_router(-1.0, loss)
    assert start > 2.0  # the fresh router sends more than half the tokens to one expert
    assert balanced < 1.5  # every expert near a quarter of the tokens
    assert collapsed > 3.5  # nearly all tokens in one expert


def test_local_entropy_makes_routing_decisive():
    torch.manual_seed(0)
    layer = RoutedExperts(width=8, hidden=8, experts=4, top_k=1, dropout=0.0)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(3))
    start = local_entropy_loss(layer(x)[1]).item()
    opt = torch.optim.Adam(layer.router.parameters(), lr=0.05)
    for _ in range(100):
        opt.zero_grad()
        local_entropy_loss(layer(x)[1]).backward()
        opt.step()
    assert local_entropy_loss(layer(x)[1]).item() < 0.2 * start


def test_the_expert_load_report():
    report = expert_load_report(
        {"image": [[30, 10, 0, 0]], "audio": [[0, 10, 20, 10]], "text": [[0, 0, 0, 0]]}
    )
    assert report["tokens"] == {"image": 40, "audio": 40}  # a modality with no tokens is left out
    assert report["share"]["image"] == [[0.75, 0.25, 0.0, 0.0]]
    assert report["share_all"] == [[0.375, 0.25, 0.25, 0.125]]
    assert report["max_over_mean"] == pytest.approx(1.5)
    assert report["min_over_mean"] == pytest.approx(0.5)
    assert expert_load_report({"image": [[0, 0]]}) == {}
