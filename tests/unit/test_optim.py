"""The optimiser's schedule and groups, against the equations they implement."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from anybind.config import config_from_dict
from anybind.objectives import build_objective
from anybind.recipes.optim import build_optimizer, param_groups
from anybind.schedules import warmup_cosine
from anybind.space import Space


@pytest.mark.parametrize(("warmup", "total"), [(5, 20), (1, 10), (0, 8)])
def test_warmup_is_linear_then_cosine_reaches_zero_at_the_end(warmup, total) -> None:
    factor = warmup_cosine(warmup, total)
    for step in range(total + 3):
        if step < warmup:
            expected = (step + 1) / warmup  # step 0 already trains: 1/warmup, not 0
        else:
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            expected = 0.5 * (1 + math.cos(math.pi * progress))
        assert factor(step) == pytest.approx(expected, abs=1e-12), step
    if warmup:
        assert factor(warmup - 1) == pytest.approx(1.0)  # full lr at the end of warm-up
    assert factor(warmup) == pytest.approx(1.0) and factor(total) == pytest.approx(0.0)


def test_the_schedule_drives_the_optimiser_lr(tiny_npz) -> None:
    config = config_from_dict(tiny_config(tiny_npz, **{"optim.warmup_steps": 3}))
    space = Space(config)
    optimizer, schedule = build_optimizer(space, build_objective(config), config, 12)
    factor = warmup_cosine(3, 12)
    for step in range(12):
        assert optimizer.param_groups[0]["lr"] == pytest.approx(config.optim.lr * factor(step))
        optimizer.step()
        schedule.step()


def test_no_weight_decay_on_biases_norms_and_the_temperature(tiny_npz) -> None:
    config = config_from_dict(tiny_config(tiny_npz))
    space = Space(config)
    decay, no_decay = param_groups(space, 0.05)
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in space.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    kept = {names[id(p)] for p in no_decay["params"]}
    assert "log_logit_scale" in kept
    assert all(space.get_parameter(n).ndim >= 2 for n in decayed)
    assert all(space.get_parameter(n).ndim < 2 or n.endswith("logit_scale") for n in kept)
    trainable = {n for n, p in space.named_parameters() if p.requires_grad}
    assert decayed | kept == trainable and not decayed & kept
    assert any(n.endswith(".bias") for n in kept) and any("norm" in n for n in kept)


def test_bf16_precision_really_runs_the_towers_in_bf16(tiny_npz) -> None:
    """A mutant with autocast never enabled keeps a finite loss; the dtypes tell."""
    from anybind.recipes.data import build_dataset
    from anybind.recipes.train_step import Aligner, forward_backward

    seen: dict[str, torch.dtype] = {}
    for precision in ("fp32", "bf16"):
        config = config_from_dict(tiny_config(tiny_npz, **{"optim.precision": precision}))
        space = Space(config).train()
        projection = space.towers["image"].projection
        handle = projection.register_forward_hook(
            lambda _m, _i, out, p=precision: seen.__setitem__(p, out.dtype)
        )
        dataset, _ = build_dataset(config.data.train, config, space.modalities, progress=False)
        loss, _ = forward_backward(Aligner(space, build_objective(config), config),
                                   dataset.batch(range(16)), 0, torch.device("cpu"))  # fmt: skip
        handle.remove()
        assert torch.isfinite(loss)
    assert seen == {"fp32": torch.float32, "bf16": torch.bfloat16}
