"""optim.micro_batches: GradCache in the training step gives the full-batch gradient."""

from __future__ import annotations

import pytest
import torch
from conftest import tiny_config

from anybind.config import config_from_dict
from anybind.objectives import build_objective
from anybind.recipes.data import build_dataset
from anybind.recipes.train_step import Aligner, forward_backward
from anybind.space import Space


@pytest.mark.parametrize("k", [2, 3, 8])
def test_micro_batches_give_the_full_batch_gradient(tiny_npz, k):
    # two text towers (LayerNorm only, no BatchNorm): GradCache is exact for them
    data = tiny_config(tiny_npz, **{"objective.positives": "label"})
    data["modalities"] = {
        "text": {"encoder": {"type": "text_bytes", "width": 16, "layers": 1, "heads": 2}},
        "title": {
            "kind": "text",
            "encoder": {"type": "text_bytes", "width": 16, "layers": 1, "heads": 2},
        },
    }
    data["data"]["train"] = data["data"]["eval"] = [
        {"type": "arrays", "path": str(tiny_npz), "keys": {"text": "captions", "title": "captions"}}
    ]
    data["eval"] = {}
    config = config_from_dict(data)
    torch.manual_seed(0)
    space = Space(config).train()
    objective = build_objective(config)
    dataset, _ = build_dataset(config.data.train, config, space.modalities, progress=False)
    batch = dataset.batch(range(24))

    def grads(micro: int) -> tuple[float, list[torch.Tensor]]:
        space.zero_grad(set_to_none=True)
        cfg = config.model_copy(
            update={"optim": config.optim.model_copy(update={"micro_batches": micro})}
        )
        loss, terms = forward_backward(
            Aligner(space, objective, cfg), batch, 0, torch.device("cpu")
        )
        assert set(terms) == {"text~title_loss"}
        return loss.item(), [p.grad.clone() for p in space.parameters() if p.grad is not None]

    loss_1, full = grads(1)
    loss_k, cached = grads(k)
    assert loss_k == pytest.approx(loss_1, rel=1e-6)
    assert len(full) == len(cached) > 10
    for g, c in zip(full, cached, strict=True):
        torch.testing.assert_close(c, g, rtol=1e-4, atol=1e-6)
