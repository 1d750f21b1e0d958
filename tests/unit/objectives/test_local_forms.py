"""The local forms of the pairwise objectives (what each rank computes under torchrun): the
shares of any split of the gathered batch into ranks add up to the single-process terms, in
value and in gradient (features, scales, bias), float64."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anybind.objectives.infonce import InfoNCE, PairScales
from anybind.objectives.siglip import SigLIP

N, D = 9, 5
PAIRS = [("image", "text"), ("image", "audio")]
SPLITS = [[4, 5], [9, 0], [2, 3, 4]]


def inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    features = {
        m: F.normalize(torch.randn(N, D, generator=gen, dtype=torch.float64), dim=1)
        for m in ("image", "text", "audio")
    }
    masks = {m: torch.ones(N, dtype=torch.bool) for m in features}
    masks["audio"][[1, 4, 7]] = False  # the image~audio pair has 6 rows
    groups = torch.tensor([0, 1, 2, 0, 3, 1, 4, 5, 0])
    return features, masks, groups


def objectives() -> dict[str, torch.nn.Module]:
    return {
        "infonce": InfoNCE(PAIRS),
        "infonce_per_pair": InfoNCE(PAIRS, scales=PairScales(PAIRS, 7.0, 100.0)),
        "infonce_tiled": InfoNCE(PAIRS, tiled=True, tile=2),
        "siglip": SigLIP(PAIRS),
    }


def grads_of(loss: torch.Tensor, leaves: list[torch.Tensor]) -> list[torch.Tensor]:
    return list(torch.autograd.grad(loss, leaves, allow_unused=True, materialize_grads=True))


@pytest.mark.parametrize("name", list(objectives()))
@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("split", SPLITS, ids=str)
def test_the_shares_of_the_ranks_add_up_to_the_whole(name, use_groups, split) -> None:
    objective = objectives()[name].double()
    assert objective.local
    features, masks, groups = inputs()
    groups = groups if use_groups else None
    scale = torch.tensor(6.0, dtype=torch.float64, requires_grad=True)
    leaves = [*(f.requires_grad_(True) for f in features.values()), scale,
              *objective.parameters()]  # fmt: skip

    whole = objective(features, masks, groups, scale)
    total_whole = torch.stack(list(whole.values())).sum()
    expected = grads_of(total_whole, leaves)

    shares: dict[str, torch.Tensor] = {}
    start = 0
    for size in split:
        rows = slice(start, start + size)
        for key, value in objective.local_forward(features, masks, groups, scale, rows).items():
            shares[key] = shares.get(key, 0) + value
        start += size
    assert shares.keys() == whole.keys()
    for key, value in whole.items():
        assert shares[key].item() == pytest.approx(value.item(), rel=1e-12), key
    got = grads_of(torch.stack(list(shares.values())).sum(), leaves)
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-10, atol=1e-12)


def test_tiled_siglip_has_no_local_form() -> None:
    assert not SigLIP(PAIRS, tiled=True).local
