"""Under torchrun: a shared backbone, a fusion module and a predictor train on two ranks as in
one process. Each rank embeds its rows, fuses and predicts them, and the gathered global batch
is scored; with no randomness in the step (no modality dropout, no augmentation) and no
BatchNorm in what trains, two ranks give one process's losses and weights. A routed backbone's
balancing loss is each rank's own (the ranks' mean), so there only the first step's objective
terms, computed before any update, are compared."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from conftest import CLASS_NAMES, tiny_config, tiny_images
from test_backbone import backbone_config
from test_distributed_training import losses, torchrun_many

from anybind.checkpoint import WEIGHTS, load_weights
from anybind.config import config_from_dict
from anybind.recipes.extend import extended_config
from anybind.recipes.train import train

pytestmark = pytest.mark.slow


def exact(config: dict, steps: int = 3) -> dict:
    config["optim"].update(steps=steps, batch_size=31, warmup_steps=1)
    config["train"].update(log_every=1, checkpoint_every=steps)
    for modality in config["modalities"].values():
        modality["augment"] = False
    return config


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> dict[str, tuple[dict, Path]]:
    """Every case's config, trained on two ranks in one launch: name → (config, run)."""
    root = tmp_path_factory.mktemp("derived")
    images, labels = tiny_images(96)
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    npz = root / "tiny.npz"
    np.savez(npz, images=images, sketch=images[:, :, ::-1].copy(), labels=labels,
             captions=captions)  # fmt: skip
    base = tiny_config(npz, **{"optim.steps": 20})
    base["modalities"]["sketch"] = {**base["modalities"]["image"], "kind": "image"}
    base["objective"] = {"pairs": "anchor", "anchor": "text"}
    base["data"]["train"][0]["keys"]["sketch"] = "sketch"
    train(config_from_dict(base), root / "base", progress=False)
    source = {"type": "arrays", "path": str(npz),
              "keys": {"image": "images", "sketch": "sketch", "text": "captions"}}  # fmt: skip
    extension = {
        "data": {"train": [source], "eval": [source]},
        "optim": {"lr": 0.003, "steps": 3, "batch_size": 31, "warmup_steps": 1},
        "train": {"log_every": 1, "checkpoint_every": 3},
    }
    configs = {
        "experts": exact(backbone_config(npz, ffn="experts")),
        "moe": exact(backbone_config(npz, ffn="moe")),
        "fusion": {**extension, "fusion": {"type": "transformer", "heads": 2,
                                           "modalities": ["image", "sketch"]}},
        "predictor": {**extension, "predictor": {"modalities": ["image", "sketch"],
                                                 "hidden": 16}},
    }  # fmt: skip
    listing, out = [], {}
    for name, raw in configs.items():
        run = root / name
        if name in ("fusion", "predictor"):
            raw = extended_config(root / "base", raw, run).model_dump(mode="json")
            raw["base"]["path"] = str(root / "base")  # the one-process twin runs elsewhere
            for modality in raw["modalities"].values():
                modality["augment"] = False
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(raw))
        listing.append({"config": str(path), "out": str(run)})
        out[name] = (raw, run)
    torchrun_many("train_many.py", listing, root)
    return out


@pytest.mark.parametrize("name", ["experts", "fusion", "predictor"])
def test_two_ranks_train_the_derived_and_shared_parts_like_one_process(cases, tmp_path, name):
    raw, two = cases[name]
    one = tmp_path / "one"
    train(config_from_dict(raw), one, progress=False)
    assert losses(two) == pytest.approx(losses(one), rel=1e-5, abs=1e-6)
    w2, w1 = load_weights(two / WEIGHTS), load_weights(one / WEIGHTS)
    assert w2.keys() == w1.keys() and w1
    for key in w1:
        if not key.endswith("in_proj_bias"):  # see test_distributed_training
            torch.testing.assert_close(w2[key], w1[key], rtol=1e-4, atol=1e-5, msg=key)


def test_a_routed_backbone_trains_on_two_ranks_with_each_ranks_balancing_loss(cases, tmp_path):
    raw, two = cases["moe"]
    one = tmp_path / "one"
    train(config_from_dict(raw), one, progress=False)
    logged = {
        run: json.loads((run / "metrics.jsonl").read_text().splitlines()[0]) for run in (two, one)
    }
    objective = [k for k in logged[one] if k.endswith("_loss")]
    assert objective
    for key in objective:  # before any update: the same weights, the same global batch
        assert logged[two][key] == pytest.approx(logged[one][key], rel=1e-5)
    assert logged[two]["moe_load"] > 0 and np.isfinite(losses(two)).all()
