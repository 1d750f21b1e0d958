"""Symmetric multi-positive InfoNCE against a naive float64 double loop and the CLIP formula."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from anybind.objectives import InfoNCE, group_ids, info_nce, positive_targets


def _naive_loss(
    a: list[list[float]], b: list[list[float]], scale: float, groups: list[int] | None
) -> float:
    """Plain Python, float64: mean over a-queries and over b-queries of the cross-entropy whose
    target is uniform over the samples of the query's group."""
    n = len(a)
    groups = list(range(n)) if groups is None else groups
    logits = [
        [scale * sum(x * y for x, y in zip(a[i], b[j], strict=True)) for j in range(n)]
        for i in range(n)
    ]

    def direction(score: list[list[float]]) -> float:  # score[q][k]: query q, key k
        total = 0.0
        for q in range(n):
            peak = max(score[q])
            lse = peak + math.log(sum(math.exp(s - peak) for s in score[q]))
            positives = [k for k in range(n) if groups[k] == groups[q]]
            total += -sum(score[q][k] - lse for k in positives) / len(positives)
        return total / n

    transposed = [[logits[i][j] for i in range(n)] for j in range(n)]
    return (direction(logits) + direction(transposed)) / 2


def _naive_loss_torch(
    a: torch.Tensor, b: torch.Tensor, scale: torch.Tensor, groups: list[int]
) -> torch.Tensor:
    """The same double loop in float64 torch scalars, for autograd."""
    n = a.shape[0]
    logits = [[scale * (a[i] * b[j]).sum() for j in range(n)] for i in range(n)]
    total = a.new_zeros(())
    for q in range(n):
        for score in ([logits[q][k] for k in range(n)], [logits[k][q] for k in range(n)]):
            lse = torch.logsumexp(torch.stack(score), dim=0)
            positives = [k for k in range(n) if groups[k] == groups[q]]
            total = total - sum(score[k] - lse for k in positives) / len(positives)
    return total / (2 * n)


def _unit(n: int, d: int, gen: torch.Generator) -> torch.Tensor:
    return F.normalize(torch.randn(n, d, generator=gen, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("seed", range(5))
def test_info_nce_equals_the_naive_multi_positive_loss(seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    n, d = 7 + seed, 5
    a, b = _unit(n, d, gen), _unit(n, d, gen)
    groups = torch.randint(0, 3, (n,), generator=gen)
    scale = 2.0 + 3.0 * seed
    got = info_nce(a.float(), b.float(), torch.tensor(scale), groups)
    want = _naive_loss(a.tolist(), b.tolist(), scale, groups.tolist())
    assert got.dtype == torch.float32 and got.ndim == 0
    assert float(got) == pytest.approx(want, rel=1e-5)


def test_info_nce_on_unnormalised_inputs_equals_the_naive_loss() -> None:
    gen = torch.Generator().manual_seed(11)
    a = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 0.7
    b = torch.randn(6, 4, generator=gen, dtype=torch.float64) * 0.7
    groups = torch.tensor([5, 5, 1, 5, 1, 9])
    got = info_nce(a, b, torch.tensor(3.0, dtype=torch.float64), groups)
    # float64 inputs; the targets (1/3 here) are built in float32, hence rel 1e-7
    assert float(got) == pytest.approx(
        _naive_loss(a.tolist(), b.tolist(), 3.0, groups.tolist()), rel=1e-7
    )


@pytest.mark.parametrize("seed", range(3))
def test_without_groups_it_is_the_clip_loss(seed: int) -> None:
    gen = torch.Generator().manual_seed(100 + seed)
    n = 9
    a, b = _unit(n, 8, gen).float(), _unit(n, 8, gen).float()
    scale = torch.tensor(14.3)
    logits = scale * a @ b.T
    target = torch.arange(n)
    clip = (F.cross_entropy(logits, target) + F.cross_entropy(logits.T, target)) / 2
    torch.testing.assert_close(info_nce(a, b, scale), clip, rtol=1e-5, atol=1e-6)
    # all-distinct groups are the same as no groups
    distinct = torch.randperm(n, generator=gen) * 7
    torch.testing.assert_close(info_nce(a, b, scale, distinct), clip, rtol=1e-5, atol=1e-6)
    assert float(clip) == pytest.approx(
        _naive_loss(a.double().tolist(), b.double().tolist(), 14.3, None), rel=1e-5
    )


def test_known_values() -> None:
    # two samples, a_i == b_i orthonormal, scale s: each row is softmax([s, 0]) → -log(e^s/(e^s+1))
    a = torch.eye(2)
    s = 2.0
    expected = math.log1p(math.exp(-s))
    assert float(info_nce(a, a, torch.tensor(s))) == pytest.approx(expected, rel=1e-6)
    # same two samples in one group: the target is uniform, so the loss is the cross-entropy
    # of softmax([s, 0]) against [1/2, 1/2]: log(e^s + 1) - s/2
    same = torch.tensor([3, 3])
    expected = math.log(math.exp(s) + 1) - s / 2
    assert float(info_nce(a, a, torch.tensor(s), same)) == pytest.approx(expected, rel=1e-6)
    # constant logits: log n whatever the groups
    z = torch.zeros(5, 3)
    for groups in (None, torch.tensor([0, 0, 1, 2, 2])):
        assert float(info_nce(z, z, torch.tensor(1.0), groups)) == pytest.approx(math.log(5))


@pytest.mark.parametrize("seed", range(3))
def test_gradients_match_autograd_of_the_naive_loss(seed: int) -> None:
    gen = torch.Generator().manual_seed(200 + seed)
    n, d = 6, 4
    a0, b0 = _unit(n, d, gen), _unit(n, d, gen)
    groups = torch.randint(0, 2, (n,), generator=gen)

    a, b = a0.float().requires_grad_(), b0.float().requires_grad_()
    scale = torch.tensor(5.0, requires_grad=True)
    info_nce(a, b, scale, groups).backward()

    ra, rb = a0.clone().requires_grad_(), b0.clone().requires_grad_()
    rscale = torch.tensor(5.0, dtype=torch.float64, requires_grad=True)
    _naive_loss_torch(ra, rb, rscale, groups.tolist()).backward()

    torch.testing.assert_close(a.grad.double(), ra.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(b.grad.double(), rb.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(scale.grad.double(), rscale.grad, rtol=1e-4, atol=1e-4)
    assert float(ra.grad.abs().max()) > 1e-3  # a non-trivial gradient was compared


def test_naive_torch_and_naive_python_agree() -> None:
    gen = torch.Generator().manual_seed(7)
    a, b = _unit(5, 3, gen), _unit(5, 3, gen)
    groups = [0, 1, 0, 2, 1]
    torch_value = float(_naive_loss_torch(a, b, torch.tensor(4.0, dtype=torch.float64), groups))
    assert torch_value == pytest.approx(_naive_loss(a.tolist(), b.tolist(), 4.0, groups), rel=1e-12)


def test_permuting_the_batch_leaves_the_loss_unchanged() -> None:
    gen = torch.Generator().manual_seed(3)
    n = 10
    a, b = _unit(n, 6, gen), _unit(n, 6, gen)
    groups = torch.randint(0, 4, (n,), generator=gen)
    scale = torch.tensor(8.0, dtype=torch.float64)
    base = info_nce(a, b, scale, groups)
    for _ in range(3):
        p = torch.randperm(n, generator=gen)
        torch.testing.assert_close(
            info_nce(a[p], b[p], scale, groups[p]), base, rtol=1e-12, atol=1e-12
        )
    # but permuting only one side breaks the pairing and changes the loss
    p = torch.roll(torch.arange(n), 1)
    assert abs(float(info_nce(a, b[p], scale, groups)) - float(base)) > 1e-3


def test_positive_targets_are_row_stochastic_and_uniform_over_the_group() -> None:
    groups = torch.tensor([4, 1, 4, 4, 2, 1])
    t = positive_targets(groups, 6, torch.device("cpu"))
    torch.testing.assert_close(t.sum(dim=1), torch.ones(6))
    expected = torch.zeros(6, 6)
    for i in range(6):
        members = [j for j in range(6) if groups[j] == groups[i]]
        expected[i, members] = 1 / len(members)
    torch.testing.assert_close(t, expected)
    torch.testing.assert_close(positive_targets(None, 3, torch.device("cpu")), torch.eye(3))


def _features(n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    return {m: _unit(n, 5, gen).float() for m in ("image", "text", "audio")}


def test_infonce_module_uses_only_rows_where_both_are_present() -> None:
    gen = torch.Generator().manual_seed(5)
    features = _features(8, gen)
    masks = {
        "image": torch.tensor([1, 1, 0, 1, 1, 0, 1, 1], dtype=torch.bool),
        "text": torch.tensor([1, 0, 1, 1, 1, 1, 0, 1], dtype=torch.bool),
        "audio": torch.tensor([0, 1, 0, 0, 0, 1, 0, 0], dtype=torch.bool),
    }
    groups = torch.tensor([0, 1, 0, 2, 0, 1, 2, 2])
    scale = torch.tensor(10.0)
    loss = InfoNCE([("image", "text"), ("image", "audio"), ("text", "audio"), ("image", "smell")])
    terms = loss(features, masks, groups, scale)
    # image~audio shares one row only (index 1), text~audio one (index 5); smell is absent
    assert set(terms) == {"image~text_loss"}
    rows = [0, 3, 4, 7]  # image & text
    expected = info_nce(features["image"][rows], features["text"][rows], scale, groups[rows])
    torch.testing.assert_close(terms["image~text_loss"], expected, rtol=0, atol=0)
    naive = _naive_loss(
        features["image"][rows].double().tolist(),
        features["text"][rows].double().tolist(),
        10.0,
        groups[rows].tolist(),
    )
    assert float(terms["image~text_loss"]) == pytest.approx(naive, rel=1e-5)
    # the absent rows' features do not matter
    poisoned = {m: f.clone() for m, f in features.items()}
    poisoned["image"][[2, 5]] = float("nan")
    poisoned["text"][[1, 6]] = float("nan")
    again = loss(poisoned, masks, groups, scale)
    torch.testing.assert_close(again["image~text_loss"], expected, rtol=0, atol=0)


def test_infonce_module_without_groups_and_with_two_rows() -> None:
    gen = torch.Generator().manual_seed(6)
    features = _features(4, gen)
    masks = {
        "image": torch.tensor([1, 1, 1, 0], dtype=torch.bool),
        "text": torch.tensor([0, 1, 1, 1], dtype=torch.bool),
        "audio": torch.ones(4, dtype=torch.bool),
    }
    scale = torch.tensor(3.0)
    terms = InfoNCE([("image", "text"), ("text", "audio")])(features, masks, None, scale)
    assert set(terms) == {"image~text_loss", "text~audio_loss"}
    torch.testing.assert_close(
        terms["image~text_loss"], info_nce(features["image"][1:3], features["text"][1:3], scale)
    )
    torch.testing.assert_close(
        terms["text~audio_loss"], info_nce(features["text"][1:], features["audio"][1:], scale)
    )


def _same(groups: torch.Tensor | None) -> set[tuple[int, int]]:
    assert groups is not None
    n = groups.shape[0]
    return {(i, j) for i in range(n) for j in range(i + 1, n) if groups[i] == groups[j]}


LABELS = torch.tensor([0, 1, -1, 0, -1, -1, 1, 2])
CAPTIONS = ["a", "b", "c", "a", "c", None, "z", "c"]


def test_group_ids_none_mode() -> None:
    assert group_ids(LABELS, CAPTIONS, "none") is None


def test_group_ids_label_mode() -> None:
    # 0~3 (label 0), 1~6 (label 1); unlabelled 2, 4, 5 are alone even though 2 and 4 share "c"
    assert _same(group_ids(LABELS, CAPTIONS, "label")) == {(0, 3), (1, 6)}
    assert _same(group_ids(LABELS, None, "label")) == {(0, 3), (1, 6)}


def test_group_ids_caption_mode() -> None:
    # labels are ignored: 0~3 ("a"), 2~4~7 ("c"); 1 and 6 differ in caption; 5 has none
    assert _same(group_ids(LABELS, CAPTIONS, "caption")) == {(0, 3), (2, 4), (2, 7), (4, 7)}
    assert _same(group_ids(LABELS, None, "caption")) == set()


def test_group_ids_label_or_caption_mode() -> None:
    # labelled samples group by label; unlabelled ones by caption: 2~4 ("c"), but 7 ("c", label
    # 2) follows its label; 5 has neither and stays alone
    assert _same(group_ids(LABELS, CAPTIONS, "label_or_caption")) == {(0, 3), (1, 6), (2, 4)}


def test_group_ids_feed_info_nce_as_the_naive_targets() -> None:
    gen = torch.Generator().manual_seed(9)
    a, b = _unit(8, 4, gen), _unit(8, 4, gen)
    groups = group_ids(LABELS, CAPTIONS, "label_or_caption")
    naive_groups = [0, 1, 100, 0, 100, 101, 1, 2]  # the same partition written by hand
    got = info_nce(a, b, torch.tensor(6.0, dtype=torch.float64), groups)
    assert float(got) == pytest.approx(
        _naive_loss(a.tolist(), b.tolist(), 6.0, naive_groups), rel=1e-7
    )
