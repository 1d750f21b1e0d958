"""GradCache: chunked gradients equal one full-batch backward, dropout included."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from anybind.objectives import grad_cache as gc_module
from anybind.objectives import info_nce
from anybind.objectives.grad_cache import grad_cache_step

N, IN_A, IN_B, DIM = 12, 7, 5, 8


def _setup(seed: int = 0):
    torch.manual_seed(seed)
    towers = nn.ModuleDict(
        {
            "image": nn.Sequential(
                nn.Linear(IN_A, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, DIM)
            ),
            "text": nn.Sequential(
                nn.Linear(IN_B, 32), nn.GELU(), nn.Dropout(0.3), nn.Linear(32, DIM)
            ),
        }
    ).train()
    log_scale = nn.Parameter(torch.tensor(2.0))
    gen = torch.Generator().manual_seed(seed + 100)
    batch = {
        "image": torch.randn(N, IN_A, generator=gen),
        "text": torch.randn(N, IN_B, generator=gen),
    }
    groups = torch.tensor([0, 1, 2, 3, 0, 4, 5, 1, 6, 7, 8, 0])  # multi-positive

    encoders = {m: (lambda x, t=t: F.normalize(t(x), dim=1)) for m, t in towers.items()}

    def loss_fn(reps: dict[str, torch.Tensor]) -> torch.Tensor:
        return info_nce(reps["image"], reps["text"], log_scale.exp(), groups)

    params = [*towers.parameters(), log_scale]
    return encoders, batch, loss_fn, params


def _grads(params) -> list[torch.Tensor]:
    return [p.grad.clone() for p in params]


def _reference(encoders, batch, loss_fn, params, chunks: int):
    """One forward with a graph over the same chunks (so the same dropout masks), one backward.

    The forward is run chunk by chunk only so that dropout draws its masks exactly as the
    chunked no-grad pass does; the loss and its backward are over the whole batch at once.
    """
    reps = {
        m: torch.cat([encoders[m](c) for c in x.tensor_split(chunks) if c.shape[0]])
        for m, x in batch.items()
    }
    loss = loss_fn(reps)
    loss.backward()
    return loss.detach(), _grads(params)


@pytest.mark.parametrize("chunks", [1, 2, 4, 5, 16])
def test_chunked_gradients_equal_the_full_batch_gradients(chunks: int) -> None:
    encoders, batch, loss_fn, params = _setup()
    torch.manual_seed(42)
    want_loss, want = _reference(encoders, batch, loss_fn, params, chunks)
    want_next = torch.rand(3)  # where the RNG stands after one forward of every chunk

    for p in params:
        p.grad = None
    torch.manual_seed(42)
    loss = grad_cache_step(encoders, batch, loss_fn, chunks)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, want_loss, atol=1e-5, rtol=0)
    for got, ref in zip(_grads(params), want, strict=True):
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=0)
    assert torch.equal(torch.rand(3), want_next)  # RNG left as a single forward would leave it


def test_dropout_is_active_and_restoring_the_rng_matters(monkeypatch) -> None:
    """Without the per-chunk RNG restore the re-forward draws new dropout masks: grads differ."""
    encoders, batch, loss_fn, params = _setup()
    x = batch["image"]
    assert not torch.equal(encoders["image"](x), encoders["image"](x))  # dropout is on

    torch.manual_seed(42)
    _, want = _reference(encoders, batch, loss_fn, params, 2)
    for p in params:
        p.grad = None
    monkeypatch.setattr(gc_module, "restore_rng", lambda state: None)
    torch.manual_seed(42)
    grad_cache_step(encoders, batch, loss_fn, 2)
    got = _grads(params)
    tower_grads = list(zip(got, want, strict=True))[:-1]  # the scale's grad needs no re-forward
    assert any((g - w).abs().max() > 1e-4 for g, w in tower_grads)


def test_gradients_accumulate_and_bad_arguments_raise() -> None:
    encoders, batch, loss_fn, params = _setup()
    for p in params:
        p.grad = None
    torch.manual_seed(1)
    grad_cache_step(encoders, batch, loss_fn, 3)
    once = _grads(params)
    torch.manual_seed(1)
    grad_cache_step(encoders, batch, loss_fn, 3)
    for got, ref in zip(_grads(params), once, strict=True):
        torch.testing.assert_close(got, 2 * ref)
    with pytest.raises(ValueError):
        grad_cache_step(encoders, batch, loss_fn, 0)
    with pytest.raises(KeyError):
        grad_cache_step({"image": encoders["image"]}, batch, loss_fn, 2)
