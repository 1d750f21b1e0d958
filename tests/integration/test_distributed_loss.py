"""distributed_info_nce on 2 gloo ranks with unequal batches equals single-process info_nce.

torchrun runs tests/integration/distributed_worker.py once for the module; each rank saves its
loss and gradients, and the tests compare them with info_nce on the concatenated batch: the sum
(ranks_reduce="sum") or mean (ranks_reduce="mean") of the per-rank losses is the global loss, the
concatenated local input gradients are its gradients (world_size × them for "mean"), and DDP's
averaged parameter gradients equal the single-process parameter gradients.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torchrun_launch import torchrun

from anybind.objectives import info_nce
from anybind.objectives.distributed import (
    distributed_info_nce,
    gather_no_grad,
    gather_with_grad,
    row_info_nce_sum,
)

WORKER = Path(__file__).with_name("distributed_worker.py")
WORLD = 2
TIMEOUT_S = 120
ATOL = 1e-5


def _torchrun(out: Path, **env: str) -> subprocess.CompletedProcess:
    """Run the worker on WORLD local ranks."""
    return torchrun([str(WORKER), str(out)], world=WORLD, timeout_s=TIMEOUT_S, **env)


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("distributed")
    done = _torchrun(out)
    assert done.returncode == 0, f"workers failed ({done.returncode}):\n{done.stdout[-6000:]}"
    load = lambda name: torch.load(out / name, weights_only=True)  # noqa: E731
    return {"inputs": load("inputs.pt"), "ranks": [load(f"rank{r}.pt") for r in range(WORLD)]}


def _reference(inputs: dict, use_groups: bool) -> tuple[torch.Tensor, ...]:
    a = inputs["a"].clone().requires_grad_(True)
    b = inputs["b"].clone().requires_grad_(True)
    scale = torch.tensor(inputs["scale"], requires_grad=True)
    loss = info_nce(a, b, scale, inputs["groups"] if use_groups else None)
    loss.backward()
    return loss.detach(), a.grad, b.grad, scale.grad


CASES = [
    (split, groups, reduce, row_loss)
    for split in ("5+3", "8+0")
    for groups in (False, True)
    for reduce in ("sum", "mean")
    for row_loss in ("dense", "tiled")
]


@pytest.mark.slow
@pytest.mark.parametrize(("split", "use_groups", "reduce", "row_loss"), CASES)
def test_ranks_add_up_to_the_single_process_loss_and_gradients(
    run: dict, split: str, use_groups: bool, reduce: str, row_loss: str
) -> None:
    inputs = run["inputs"]
    assert row_loss in inputs["row_losses"], f"the worker could not load the {row_loss} row loss"
    key = f"{split}-{'groups' if use_groups else 'pairs'}-{reduce}-{row_loss}"
    ranks = [r[key] for r in run["ranks"]]
    # "mean": each rank returns world_size × its share, so divide the rank-sums by world_size
    factor = WORLD if reduce == "mean" else 1
    ref_loss, ref_a, ref_b, ref_scale = _reference(inputs, use_groups)

    assert [r["grad_a"].shape[0] for r in ranks] == inputs["splits"][split]
    total = sum(r["loss"] for r in ranks) / factor
    torch.testing.assert_close(total, ref_loss, atol=ATOL, rtol=0)
    grad_a = torch.cat([r["grad_a"] for r in ranks]) / factor
    grad_b = torch.cat([r["grad_b"] for r in ranks]) / factor
    torch.testing.assert_close(grad_a, ref_a, atol=ATOL, rtol=0)
    torch.testing.assert_close(grad_b, ref_b, atol=ATOL, rtol=0)
    for r in ranks:  # all-reduced (summed) over ranks in the worker
        torch.testing.assert_close(r["grad_scale_sum"] / factor, ref_scale, atol=ATOL, rtol=0)
    assert grad_a.abs().max() > 1e-3  # the comparison is not vacuous


@pytest.mark.slow
def test_ddp_averaged_gradients_equal_the_single_process_gradients(run: dict) -> None:
    inputs = run["inputs"]
    params = {k: v.clone().requires_grad_(True) for k, v in inputs["ddp_init"].items()}
    emb_a = F.normalize(inputs["xa"] @ params["fa.weight"].T + params["fa.bias"], dim=1)
    emb_b = F.normalize(inputs["xb"] @ params["fb.weight"].T + params["fb.bias"], dim=1)
    loss = info_nce(emb_a, emb_b, params["log_scale"].exp(), inputs["groups"])
    loss.backward()

    losses = [r["ddp"]["loss"] for r in run["ranks"]]
    torch.testing.assert_close(sum(losses) / WORLD, loss.detach(), atol=ATOL, rtol=0)
    for rank in run["ranks"]:
        got = rank["ddp"]["param_grads"]
        assert set(got) == set(params)
        for name, p in params.items():
            torch.testing.assert_close(got[name], p.grad, atol=ATOL, rtol=0, msg=name)


@pytest.mark.slow
def test_a_failing_worker_fails_the_run_instead_of_hanging(tmp_path: Path) -> None:
    done = _torchrun(tmp_path, ANYBIND_TEST_WORKER_FAIL_RANK="1")
    assert done.returncode != 0
    assert "failing on purpose" in done.stdout


# --- without an initialised process group -------------------------------------------------------


def test_gather_is_the_identity_without_a_process_group() -> None:
    assert not torch.distributed.is_initialized()
    x = torch.randn(5, 3, requires_grad=True)
    gathered, offset = gather_with_grad(x)
    assert offset == 0
    assert gathered is x
    (gathered * torch.arange(3.0)).sum().backward()
    torch.testing.assert_close(x.grad, torch.arange(3.0).expand(5, 3))
    ids = torch.arange(5)
    assert gather_no_grad(ids) == (ids, 0)


@pytest.mark.parametrize("use_groups", [False, True])
@pytest.mark.parametrize("reduce", ["sum", "mean"])
def test_single_process_distributed_loss_is_info_nce(use_groups: bool, reduce: str) -> None:
    gen = torch.Generator().manual_seed(7)
    a = F.normalize(torch.randn(9, 4, generator=gen), dim=1).requires_grad_(True)
    b = F.normalize(torch.randn(9, 4, generator=gen), dim=1).requires_grad_(True)
    groups = torch.randint(0, 3, (9,), generator=gen) if use_groups else None
    scale = torch.tensor(5.0, requires_grad=True)
    got = distributed_info_nce(a, b, scale, groups, ranks_reduce=reduce)
    grads = torch.autograd.grad(got, (a, b, scale))
    want = info_nce(a, b, scale, groups)
    want_grads = torch.autograd.grad(want, (a, b, scale))
    torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
    for g, w in zip(grads, want_grads, strict=True):
        torch.testing.assert_close(g, w, atol=ATOL, rtol=0)


def test_row_loss_blocks_with_offsets_add_up_to_one_direction() -> None:
    """Row blocks [0:3], [3:8] against all keys, positives shifted by the block offset."""
    gen = torch.Generator().manual_seed(3)
    q, k = torch.randn(8, 4, generator=gen), torch.randn(8, 4, generator=gen)
    scale = torch.tensor(2.0)
    whole = torch.nn.functional.cross_entropy(scale * q @ k.T, torch.arange(8), reduction="sum")
    blocks = row_info_nce_sum(q[:3], k, scale) + row_info_nce_sum(
        q[3:], k, scale, positive_offset=3
    )
    torch.testing.assert_close(blocks, whole)
    with pytest.raises(ValueError):
        row_info_nce_sum(q[3:], k, scale, positive_offset=4)
    with pytest.raises(ValueError):
        row_info_nce_sum(q, k, scale, q_groups=torch.zeros(8))


def test_tiled_row_loss_matches_the_dense_row_loss() -> None:
    from anybind.objectives.tiled import tiled_row_info_nce as tiled

    gen = torch.Generator().manual_seed(11)
    q = F.normalize(torch.randn(5, 4, generator=gen), dim=1)
    k = F.normalize(torch.randn(12, 4, generator=gen), dim=1)
    g = torch.randint(0, 4, (12,), generator=gen)
    scale = torch.tensor(3.0)
    for groups in (None, g):
        qg = None if groups is None else groups[4:9]
        want = row_info_nce_sum(q, k, scale, qg, groups, positive_offset=4)
        got = tiled(q, k, scale, q_groups=qg, k_groups=groups, positive_offset=4, tile=3)
        torch.testing.assert_close(got, want, atol=ATOL, rtol=0)
