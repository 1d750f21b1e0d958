"""A shared backbone (modality experts, a routed mixture of experts) trained through the normal
loop: stored once, loaded back, resumed bit-exactly, its balancing loss logged and its expert
load evaluated; frozen and left out of an extension's weights; its config errors named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import tiny_config
from safetensors.torch import load_file

from anybind.config import config_from_dict
from anybind.errors import ConfigError
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.extend import extend
from anybind.recipes.html_report import build_report
from anybind.recipes.train import train
from anybind.space import load_space


def backbone_config(npz: Path, ffn: str = "moe", **backbone) -> dict:
    """Image patches and text bytes through one shared transformer body."""
    config = tiny_config(npz, **{"optim.steps": 16})
    config["modalities"]["image"]["encoder"] = {"type": "backbone", "patch": 2}
    config["modalities"]["text"]["encoder"] = {"type": "backbone", "max_tokens": 24}
    config["backbone"] = {
        "ffn": ffn, "width": 16, "layers": 2, "heads": 2, "hidden": 16, "experts": 4,
        "balance": {"load": 0.05}, **backbone,
    }  # fmt: skip
    return config


def test_a_routed_backbone_trains_stores_once_loads_and_reports_its_load(tiny_npz, tmp_path):
    config = config_from_dict(
        {
            **backbone_config(tiny_npz),
            "optim": {"lr": 0.01, "steps": 40, "batch_size": 32, "warmup_steps": 2},
        }
    )
    train(config, tmp_path / "run", progress=False)
    stored = load_file(str(tmp_path / "run" / "model.safetensors"))
    shared = [k for k in stored if k.startswith("backbone.")]
    assert shared and not [k for k in stored if "blocks" in k and not k.startswith("backbone.")]
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    steps = [r for r in logged if "moe_load" in r]
    assert steps and all(0.05 * 0.99 <= r["moe_load"] <= 0.05 * 4 for r in steps)
    space = load_space(tmp_path / "run")
    router = stored["backbone.blocks.0.ffn.router.weight"]
    assert torch.equal(space.backbone.blocks[0].ffn.router.weight, router)
    report = evaluate_sources(space, config.data.eval, progress=False)
    load = report["expert_load"]
    assert set(load["tokens"]) == {"image", "text"}
    assert load["tokens"]["image"] == 48 * 16 * 2  # 48 images × 16 patches × 2 layers (top-1)
    assert report["zero_shot"]["image"]["top1"] > 0.6  # chance: 0.25
    page = build_report(tmp_path / "run", progress=False).read_text()
    assert 'data-plot="expert-load"' in page


def test_a_routed_backbone_resumes_bit_exactly(tiny_npz, tmp_path):
    config = config_from_dict(backbone_config(tiny_npz))
    train(config, tmp_path / "straight", progress=False)

    class Stop(Exception):
        pass

    def stop_at_8(step: int) -> None:
        if step == 8:
            raise Stop

    with pytest.raises(Stop):
        train(config, tmp_path / "broken", progress=False, after_step=stop_at_8)
    train(config, tmp_path / "broken", resume=True, progress=False)
    a = load_file(str(tmp_path / "straight" / "model.safetensors"))
    b = load_file(str(tmp_path / "broken" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_modality_experts_give_each_modality_its_own_ffn(tiny_npz, tmp_path):
    train(config_from_dict(backbone_config(tiny_npz, ffn="experts")), tmp_path / "run",
          progress=False)  # fmt: skip
    stored = load_file(str(tmp_path / "run" / "model.safetensors"))
    for m in ("image", "text"):
        assert any(k.startswith(f"backbone.blocks.1.ffn.experts.{m}.") for k in stored)
    logged = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "moe_load" not in logged  # no router, no balancing loss


def test_an_extension_keeps_the_base_backbone_frozen_and_does_not_store_it(tiny_npz, tmp_path):
    base = tmp_path / "base"
    train(config_from_dict(backbone_config(tiny_npz)), base, progress=False)
    before = load_file(str(base / "model.safetensors"))
    sketch = {"kind": "image", "options": {"size": [8, 8]},
              "encoder": {"type": "image_cnn", "width": 8, "stages": 2}}  # fmt: skip
    source = {"type": "arrays", "path": str(tiny_npz),
              "keys": {"sketch": "images", "text": "captions"}}  # fmt: skip
    ext = {
        "modalities": {"sketch": sketch},
        "anchors": ["text"],
        "data": {"train": [source], "eval": [source]},
        "optim": {"lr": 0.003, "steps": 6, "batch_size": 32, "warmup_steps": 2},
    }
    extend(base, ext, tmp_path / "grown", progress=False)
    stored = load_file(str(tmp_path / "grown" / "model.safetensors"))
    assert stored and all(k.startswith("towers.sketch.") for k in stored)
    after = load_file(str(base / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)
    grown = load_space(tmp_path / "grown")
    torch.testing.assert_close(
        grown.backbone.blocks[0].ffn.router.weight, before["backbone.blocks.0.ffn.router.weight"]
    )
    joining = {**ext, "modalities": {"sketch": {**sketch, "encoder": {"type": "backbone"}}}}
    with pytest.raises(ConfigError, match="needs an encoder of its own"):
        extend(base, joining, tmp_path / "joining", progress=False)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c.pop("backbone"), "'backbone' needs a `backbone` section"),
        (
            lambda c: (
                c["modalities"]["image"].update(
                    encoder={"type": "image_cnn", "width": 8, "stages": 2}
                )
                or c["modalities"]["text"].update(
                    encoder={"type": "text_bytes", "width": 16, "heads": 2}
                )
            ),
            "no modality's encoder is `backbone`",
        ),
        (lambda c: c["modalities"]["image"]["encoder"].update(width=32), "backbone.width is 16"),
        (lambda c: c["modalities"]["image"]["encoder"].update(patch=3), "does not divide"),
        (lambda c: c["backbone"].update(top_k=5), "top_k"),
        (lambda c: c["backbone"].update(heads=3), "must divide width"),
        (lambda c: c["optim"].update(micro_batches=2), "micro_batches"),
        (lambda c: c.setdefault("train", {}).update(parallel="fsdp"), "fsdp"),
    ],
)
def test_backbone_config_errors_name_the_key(tiny_npz, change, message):
    config = backbone_config(tiny_npz)
    change(config)
    with pytest.raises(ConfigError, match=message):
        config_from_dict(config)


@pytest.mark.parametrize("ffn", ["shared", "experts", "moe"])
def test_every_presence_pattern_embeds_the_present_rows_as_alone(tiny_npz, ffn):
    """A batch whose rows hold both modalities, only the image or only the text: each present
    row's embedding is the one it gets alone, and absent rows are zeros."""
    from anybind.space import Space

    torch.manual_seed(0)
    space = Space(config_from_dict(backbone_config(tiny_npz, ffn=ffn))).eval()
    images = torch.rand(3, 1, 8, 8)
    texts = ["a picture of one", "a picture of two", "three"]
    batch = {
        "image": images, "image_mask": torch.tensor([True, True, False]),
        "text": texts, "text_mask": torch.tensor([True, False, True]),
    }  # fmt: skip
    with torch.no_grad():
        out = space(batch)
        for i, (has_image, has_text) in enumerate([(True, True), (True, False), (False, True)]):
            if has_image:
                alone = space.embed("image", images[i : i + 1])[0]
                torch.testing.assert_close(out["image"][i], alone, atol=1e-5, rtol=1e-5)
            else:
                assert out["image"][i].abs().sum() == 0
            if has_text:
                alone = space.embed("text", [texts[i]])[0]
                torch.testing.assert_close(out["text"][i], alone, atol=1e-5, rtol=1e-5)
            else:
                assert out["text"][i].abs().sum() == 0
