from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_config

from anybind.config import config_from_dict
from anybind.objectives import (
    CWCL,
    InfoNCE,
    build_objective,
    cwcl_loss,
    info_nce,
    weighted_info_nce,
)


def naive_cwcl(x: torch.Tensor, v: torch.Tensor, scale: float) -> float:
    """The CWCL equations written out in float64 loops (Srinivasa et al. 2023, eq. 4–5)."""
    x, v = x.double(), v.double()
    n = x.shape[0]
    w = [[(1 + float(v[i] @ v[j])) / 2 for j in range(n)] for i in range(n)]
    logits = [[scale * float(x[i] @ v[j]) for j in range(n)] for i in range(n)]
    rows = 0.0
    for i in range(n):
        lse = math.log(sum(math.exp(logits[i][j]) for j in range(n)))
        rows += -sum(w[i][j] * (logits[i][j] - lse) for j in range(n)) / sum(w[i])
    cols = 0.0
    for j in range(n):
        lse = math.log(sum(math.exp(logits[i][j]) for i in range(n)))
        cols += -sum(w[i][j] * (logits[i][j] - lse) for i in range(n)) / sum(
            w[i][j] for i in range(n)
        )
    return (rows / n + cols / n) / 2


def test_cwcl_matches_the_written_out_equations():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(7, 5), dim=1)
    v = F.normalize(torch.randn(7, 5), dim=1)
    got = cwcl_loss(x, v, torch.tensor(3.0)).item()
    assert got == pytest.approx(naive_cwcl(x, v, 3.0), rel=1e-5)


def test_weighted_info_nce_with_group_weights_is_info_nce():
    torch.manual_seed(1)
    a, b = F.normalize(torch.randn(9, 4), dim=1), F.normalize(torch.randn(9, 4), dim=1)
    groups = torch.tensor([0, 1, 0, 2, 2, 1, 0, 3, 3])
    same = (groups[:, None] == groups[None, :]).float()
    scale = torch.tensor(5.0)
    assert weighted_info_nce(a, b, scale, same).item() == pytest.approx(
        info_nce(a, b, scale, groups).item(), rel=1e-6
    )


def test_cwcl_gives_no_gradient_to_the_anchor():
    x = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    v = F.normalize(torch.randn(6, 4), dim=1).requires_grad_()
    module = CWCL([("image", "text")], anchor="text")
    terms = module(
        {"image": x, "text": v},
        {"image": torch.ones(6, dtype=torch.bool), "text": torch.ones(6, dtype=torch.bool)},
        None,
        torch.tensor(2.0),
    )
    terms["image~text_loss"].backward()
    # the anchor still gets the gradient of the logits, but none through the weights:
    weights_only = torch.autograd.grad(cwcl_loss(x.detach(), v, torch.tensor(2.0)), v)[0]
    assert torch.allclose(v.grad, weights_only)


@pytest.mark.parametrize(
    "changes, kind",
    [
        ({}, "InfoNCE"),
        ({"objective.type": "cwcl", "objective.anchor": "text"}, "CWCL"),
        ({"objective.type": "siglip"}, "SigLIP"),
        ({"objective": {"type": "symile"}}, "Symile"),
    ],
)
def test_the_config_selects_the_objective(tiny_npz, changes, kind):
    config = config_from_dict(tiny_config(tiny_npz, **changes))
    assert type(build_objective(config)).__name__ == kind


def test_per_pair_scales_are_learnable_and_clamped(tiny_npz):
    config = config_from_dict(tiny_config(tiny_npz, **{"objective.scale": "per_pair"}))
    objective = build_objective(config)
    assert isinstance(objective, InfoNCE) and objective.scales is not None
    assert objective.scales("image", "text").item() == pytest.approx(1 / 0.07, rel=1e-5)
    with torch.no_grad():
        objective.scales.log_scales["image~text"].fill_(20.0)
    assert objective.scales("image", "text").item() == pytest.approx(100.0)
    assert sum(p.numel() for p in objective.parameters()) == 1


def test_objective_options_that_do_not_fit_the_type_are_errors(tiny_npz):
    from anybind.errors import ConfigError

    def error(objective: dict) -> str:
        with pytest.raises(ConfigError) as info:
            config_from_dict(tiny_config(tiny_npz, objective=objective))
        return str(info.value)

    # each type has its own options: a key of another type is named with the type it lacks
    message = error({"type": "cwcl", "anchor": "text", "tiled": True})
    assert "objective.tiled: not an option of objective type 'cwcl'" in message
    assert "objective.symile" not in error({"type": "symile", "pairs": "all"})
    assert "objective.pairs: not an option of objective type 'symile'" in error(
        {"type": "symile", "pairs": "all"}
    )
    assert "objective.anchor" in error({"type": "cwcl"})
    assert "objective.modalities" in error({"type": "symile", "modalities": ["image"]})
    assert "objective.type" in error({"type": "clip"})
    # cwcl weights a pair by its anchor: a pair without the anchor cannot be scored
    assert "does not hold it" in error(
        {"type": "cwcl", "anchor": "text", "pairs": [["image", "image"]]}
    )
    # infonce is the default type; its options need no `type`
    config = config_from_dict(tiny_config(tiny_npz, objective={"tiled": True, "tile": 5}))
    assert config.objective.type == "infonce" and config.objective.tile == 5
