"""Fusion modules and modality dropout, with presence masks of every pattern: all present, each
one missing, only one present, none."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from anybind.space.fusion import MeanFusion, TransformerFusion, drop_modalities

NAMES = ["image", "audio", "pen"]
#: every presence pattern of three modalities, one row each (the last row: none present)
PATTERNS = torch.tensor(list(itertools.product([True, False], repeat=3)))


def inputs(dim: int = 8, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    emb = {m: F.normalize(torch.randn(len(PATTERNS), dim, generator=g), dim=-1) for m in NAMES}
    present = {m: PATTERNS[:, i] for i, m in enumerate(NAMES)}
    return emb, present


def naive_mean(emb: dict, present: dict) -> torch.Tensor:
    rows = []
    for r in range(len(PATTERNS)):
        vs = [emb[m][r].double() for m in emb if present[m][r]]
        rows.append(F.normalize(torch.stack(vs).mean(0), dim=0) if vs else torch.zeros(8).double())
    return torch.stack(rows).float()


def test_mean_fusion_is_the_normalised_mean_of_what_is_present():
    emb, present = inputs()
    out = MeanFusion(NAMES, 8)(emb, present)
    torch.testing.assert_close(out, naive_mean(emb, present))
    single = PATTERNS.sum(dim=1) == 1  # one present: exactly that embedding
    for i, m in enumerate(NAMES):
        rows = single & PATTERNS[:, i]
        torch.testing.assert_close(out[rows], emb[m][rows])


def test_the_transformer_starts_as_the_mean_and_ignores_what_is_absent():
    torch.manual_seed(0)
    emb, present = inputs()
    fusion = TransformerFusion(NAMES, 8, layers=1, heads=2).eval()
    torch.testing.assert_close(fusion(emb, present)[:-1], naive_mean(emb, present)[:-1])
    torch.nn.init.normal_(fusion.out.weight)  # as if trained
    with torch.no_grad():
        clean = fusion(emb, present)
        dirty = {m: torch.where(present[m][:, None], e, torch.full_like(e, 7.0))
                 for m, e in emb.items()}  # fmt: skip
        assert torch.equal(fusion(dirty, present), clean)
        assert not torch.allclose(clean[:-1], naive_mean(emb, present)[:-1])
    assert torch.isfinite(clean).all()


@pytest.mark.parametrize("rate", [0.0, 0.3, 1.0])
def test_dropout_never_empties_a_row_and_is_seeded(rate):
    present = {m: PATTERNS[:, i].repeat(200) for i, m in enumerate(NAMES)}
    torch.manual_seed(5)
    kept = drop_modalities(present, {m: rate for m in NAMES})
    torch.manual_seed(5)
    again = drop_modalities(present, {m: rate for m in NAMES})
    stacked = torch.stack([kept[m] for m in NAMES], dim=1)
    before = torch.stack([present[m] for m in NAMES], dim=1)
    assert torch.equal(stacked, torch.stack([again[m] for m in NAMES], dim=1))
    assert not (stacked & ~before).any()  # nothing absent appears
    assert torch.equal(stacked.any(dim=1), before.any(dim=1))  # a row keeps one of its own
    if rate == 0.0:
        assert torch.equal(stacked, before)
    if rate == 1.0:
        assert torch.equal(stacked.sum(dim=1), before.any(dim=1).long())  # exactly one stays
    if rate == 0.3:  # rows of all three: each hidden about 30% of the time
        full = before.all(dim=1)
        hidden = 1 - stacked[full].float().mean().item()
        assert 0.22 < hidden < 0.38


def test_a_modality_without_a_rate_is_never_hidden():
    present = {m: torch.ones(50, dtype=torch.bool) for m in NAMES}
    torch.manual_seed(0)
    kept = drop_modalities(present, {"image": 1.0})
    assert kept["audio"].all() and kept["pen"].all() and not kept["image"].any()


def test_the_predictor_starts_as_the_others_mean_and_marks_what_it_can_predict():
    from anybind.space.predictor import Predictor

    torch.manual_seed(0)
    emb, present = inputs()
    out = Predictor(NAMES, 8, hidden=16)(emb, present)
    assert set(out) == {f"{m}_predicted" for m in NAMES}
    for i, m in enumerate(NAMES):
        estimate, has = out[f"{m}_predicted"]
        others = [j for j in range(3) if j != i]
        assert torch.equal(has, PATTERNS[:, others].any(dim=1))  # needs another one present
        expected = naive_mean({o: emb[o] for o in NAMES if o != m},
                              {o: present[o] for o in NAMES if o != m})  # fmt: skip
        rows = has.nonzero().flatten()
        torch.testing.assert_close(estimate[rows], expected[rows])
        assert estimate[~has].abs().sum() == 0
