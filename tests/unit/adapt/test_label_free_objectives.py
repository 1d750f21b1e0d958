"""The label-free objectives against their equations and their purpose: a sign flip in tent's
entropy or in self-train's diversity term, or a broken SHOT clustering, fails here."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anybind.adapt.self_train import centroid_labels, information_maximisation


def naive_information_maximisation(logits: torch.Tensor, weight: float) -> torch.Tensor:
    """SHOT (Liang et al. 2020): L = E_x[H(p(x))] − w · H(E_x[p(x)]), in float64."""
    p = logits.double().softmax(1)
    entropy = -(p * (p + 1e-6).log()).sum(1).mean()
    mean = p.mean(0)
    return entropy - weight * (-(mean * (mean + 1e-6).log()).sum())


@pytest.mark.parametrize("weight", [0.0, 1.0, 0.3])
def test_information_maximisation_is_the_published_equation(weight) -> None:
    logits = torch.randn(20, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    got = information_maximisation(logits, weight)
    assert got.item() == pytest.approx(naive_information_maximisation(logits, weight).item(),
                                       rel=1e-9)  # fmt: skip


def test_minimising_it_gives_confident_and_balanced_predictions() -> None:
    """From logits that all lean to class 0, descent makes every row confident (low entropy)
    while the classes stay used evenly (high entropy of the mean): a sign flip of either term
    breaks one of the two."""
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(60, 3, generator=gen) * 0.1 + torch.tensor([1.0, 0.0, 0.0])
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(300):
        opt.zero_grad()
        information_maximisation(logits, 1.0).backward()
        opt.step()
    p = logits.detach().softmax(1)
    row_entropy = -(p * p.clamp_min(1e-12).log()).sum(1).mean()
    mean = p.mean(0)
    assert row_entropy < 0.1  # confident
    assert mean.min() > 0.15  # every class kept in use (entropy alone: all rows go to class 0)


def test_centroid_labels_recover_clusters_despite_wrong_predictions() -> None:
    """Three separated clusters; the classifier's soft predictions are right for only 60% of
    the points: the prediction-weighted centroids and k-means steps recover every cluster."""
    gen = torch.Generator().manual_seed(2)
    centres = F.normalize(torch.randn(3, 8, generator=gen), dim=1) * 4
    truth = torch.arange(60) % 3
    emb = F.normalize(centres[truth] + 0.3 * torch.randn(60, 8, generator=gen), dim=1)
    predicted = truth.clone()
    wrong = torch.randperm(60, generator=gen)[:24]
    predicted[wrong] = (truth[wrong] + 1) % 3
    probs = 0.6 * F.one_hot(predicted, 3).float() + 0.4 / 3
    assert (probs.argmax(1) == truth).float().mean() == pytest.approx(0.6)
    assert torch.equal(centroid_labels(emb, probs), truth)
