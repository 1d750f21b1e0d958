"""A fusion module grown onto a trained run: trained against the frozen text tower with
modality dropout, bit-exact on resume, its joint embedding scored by evaluation; the
parameter-free mean needs no training. Presence patterns: both, each one alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASS_NAMES, heldout_of, tiny_config, tiny_images
from safetensors.torch import load_file

from anybind.config import config_from_dict
from anybind.recipes.extend import extend, extended_config
from anybind.recipes.train import train
from anybind.space import load_space


def write_pairs(path: Path, n: int, seed: int) -> Path:
    """Images, a second view (the image flipped left-right, as `sketch`), captions."""
    images, labels = tiny_images(n, seed=seed)
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    np.savez(path, images=images, sketch=images[:, :, ::-1].copy(), labels=labels,
             captions=captions)  # fmt: skip
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("fuse")
    npz = write_pairs(root / "tiny.npz", 96, seed=0)
    write_pairs(heldout_of(npz), 48, seed=1)
    config = tiny_config(npz, **{"optim.steps": 60})
    config["modalities"]["sketch"] = {**config["modalities"]["image"], "kind": "image"}
    config["objective"] = {"pairs": "anchor", "anchor": "text"}
    for source in config["data"]["train"] + config["data"]["eval"]:
        source["keys"] = {**source["keys"], "sketch": "sketch"}
    config["eval"]["templates"]["sketch"] = ["a picture of {}"]
    train(config_from_dict(config), root / "run", progress=False)
    return root


def fusion_extension(root: Path, kind: str = "transformer", steps: int = 12, **fusion) -> dict:
    return {
        "fusion": {"type": kind, "modalities": ["image", "sketch"], "heads": 2, **fusion},
        "data": {
            "train": [
                {
                    "type": "arrays",
                    "path": str(root / "tiny.npz"),
                    "keys": {"image": "images", "sketch": "sketch", "text": "captions"},
                }
            ],
            "eval": [
                {
                    "type": "arrays",
                    "path": str(root / "tiny-heldout.npz"),
                    "keys": {"image": "images", "sketch": "sketch"},
                }
            ],
        },  # fmt: skip
        "optim": {"lr": 0.003, "steps": steps, "batch_size": 32, "warmup_steps": 2},
        "train": {"checkpoint_every": 4, "log_every": 2},
        "eval": {"templates": {"joint": ["a picture of {}"]}},
    }


def test_the_fusion_trains_against_the_anchor_and_only_it_is_stored(base, tmp_path):
    from anybind.api import load_run

    ext = fusion_extension(base, steps=30, dropout={"image": 0.3, "sketch": 0.3})
    config = extended_config(base / "run", ext, tmp_path / "f")
    assert config.pairs() == [("joint", "text")]
    extend(base / "run", ext, tmp_path / "f", progress=False)
    stored = load_file(str(tmp_path / "f" / "model.safetensors"))
    assert stored and all(k.startswith("fusion.") for k in stored)
    assert any(v.abs().sum() > 0 for k, v in stored.items() if k.startswith("fusion.out."))
    report = load_run(tmp_path / "f").evaluate()
    assert report["zero_shot"]["joint"]["n"] == 48
    assert report["zero_shot"]["joint"]["top1"] > 0.8  # chance 0.25


def test_modality_dropout_resumes_bit_exactly(base, tmp_path):
    ext = fusion_extension(base, steps=12, dropout={"image": 0.5, "sketch": 0.5})
    straight = tmp_path / "straight"
    extend(base / "run", ext, straight, progress=False)

    class Stop(Exception):
        pass

    def stop_at_8(step: int) -> None:
        if step == 8:
            raise Stop

    broken = tmp_path / "broken"
    with pytest.raises(Stop):
        train(extended_config(base / "run", ext, broken), broken, progress=False,
              after_step=stop_at_8)  # fmt: skip
    extend(base / "run", ext, broken, resume=True, progress=False)
    a = load_file(str(straight / "model.safetensors"))
    b = load_file(str(broken / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    summary = json.loads((broken / "summary.json").read_text())
    assert summary["resumed_from"] == 8


def test_the_mean_needs_no_training_and_fuses_every_presence_pattern(base, tmp_path):
    out = tmp_path / "mean"
    summary = extend(base / "run", fusion_extension(base, kind="mean"), out, progress=False)
    assert summary.steps == 0
    space = load_space(out)
    g = torch.Generator().manual_seed(0)
    image, sketch = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    with torch.no_grad():
        ei, es = space.embed("image", image), space.embed("sketch", sketch)
        masks = {"image": torch.tensor([True, True, False]),
                 "sketch": torch.tensor([True, False, True])}  # fmt: skip
        joint, has = space.fuse({"image": ei, "sketch": es}, masks)
    assert has.tolist() == [True, True, True]
    torch.testing.assert_close(joint[0], torch.nn.functional.normalize(ei[0] + es[0], dim=0))
    torch.testing.assert_close(joint[1], ei[1])
    torch.testing.assert_close(joint[2], es[2])
    none, has_none = space.fuse({"image": ei, "sketch": es},
                                {m: torch.zeros(3, dtype=torch.bool) for m in masks})  # fmt: skip
    assert not has_none.any() and none.abs().sum() == 0


def test_a_fusion_of_unknown_modalities_is_named(base, tmp_path):
    from anybind.errors import ConfigError

    ext = fusion_extension(base)
    ext["fusion"]["modalities"] = ["image", "audio"]
    with pytest.raises(ConfigError, match="fusion.modalities"):
        extended_config(base / "run", ext, tmp_path / "x")


def test_run_embed_joint_takes_any_subset_per_sample(base, tmp_path):
    from anybind.api import load_run
    from anybind.errors import DataError

    out = tmp_path / "mean"
    extend(base / "run", fusion_extension(base, kind="mean"), out, progress=False)
    run = load_run(out)
    g = torch.Generator().manual_seed(1)
    a, b = torch.rand(2, 8, 8, generator=g).numpy(), torch.rand(2, 8, 8, generator=g).numpy()
    joint = run.embed_joint({"image": [a[0], a[1], None], "sketch": [b[0], None, b[1]]})
    single = run.embed("image", [a[1]])
    assert joint.shape == (3, 16)
    torch.testing.assert_close(joint[1], single[0])
    with pytest.raises(DataError, match="has none of"):
        run.embed_joint({"image": [None], "sketch": [None]})


@pytest.mark.parametrize("kind", ["mlp", "anchor"])
def test_a_predictor_learns_the_missing_modality(base, tmp_path, kind):
    """`sketch_predicted` from the image alone retrieves sketches of the same class."""
    from anybind.api import load_run
    from anybind.recipes.evaluate import class_embeddings

    ext = fusion_extension(base, steps=30)
    del ext["fusion"]
    ext["predictor"] = {"modalities": ["image", "sketch"], "kind": kind, "hidden": 32}
    ext["eval"] = {"templates": {}}
    config = extended_config(base / "run", ext, tmp_path / "p")
    assert config.pairs() == [("image_predicted", "image"), ("sketch_predicted", "sketch")]
    extend(base / "run", ext, tmp_path / "p", progress=False)
    stored = load_file(str(tmp_path / "p" / "model.safetensors"))
    assert stored and all(k.startswith("predictor.") for k in stored)
    report = load_run(tmp_path / "p").evaluate()
    assert report["retrieval"]["sketch_predicted->sketch"]["R@1"] > 0.8
    assert report["retrieval"]["sketch_predicted->sketch"]["emergent"] is False
    if kind == "anchor":  # the keys are the class prompts and never move
        space = load_space(tmp_path / "p")
        prompts = class_embeddings(space, CLASS_NAMES, ["a picture of {}"], "text")
        keys = stored["predictor.nets.sketch.keys"]
        torch.testing.assert_close(keys, torch.nn.functional.normalize(prompts, dim=-1))


def test_robustness_scores_subsets_and_corruption_curves(base, tmp_path):
    from typer.testing import CliRunner

    from anybind.cli.main import app
    from anybind.recipes.html_report import build_report
    from anybind.recipes.robustness import robustness

    out = tmp_path / "mean"
    extend(base / "run", fusion_extension(base, kind="mean"), out, progress=False)
    space = load_space(out)
    report = robustness(space, space.config.data.eval, levels=(0.0, 0.5, 1.0), progress=False)
    assert set(report["subsets"]) == {"image", "sketch", "image+sketch"}
    from anybind.api import load_run

    clean = load_run(out).evaluate()["zero_shot"]
    assert report["subsets"]["image+sketch"] == pytest.approx(clean["joint"]["top1"])
    noise = report["corruptions"]["image"]["gaussian_noise"]
    assert set(noise) == {"image", "joint"}
    assert noise["image"]["top1"][0] == pytest.approx(clean["image"]["top1"])
    assert noise["image"]["top1"][-1] < noise["image"]["top1"][0]  # noise of σ 0.5 hurts
    assert "effective_robustness" in noise["joint"] and "effective_robustness" not in noise["image"]
    result = CliRunner().invoke(app, ["eval", str(out), "--robustness", "--quiet"])
    assert result.exit_code == 0, result.output
    assert (out / "robustness.json").is_file() and "under corruption" in result.output
    page = build_report(out, progress=False).read_text()
    assert 'data-plot="robustness-image"' in page and 'data-plot="robustness-subsets"' in page


def test_the_joint_embedding_is_embedded_indexed_and_searched(base, tmp_path):
    """`anybind embed` stores the joint embedding like a modality; a text query finds the
    samples of its class through it."""
    import anybind
    from anybind.config.schema import ArraysSource

    out = tmp_path / "mean"
    extend(base / "run", fusion_extension(base, kind="mean"), out, progress=False)
    held_out = ArraysSource(
        path=str(base / "tiny-heldout.npz"), keys={"image": "images", "sketch": "sketch"}
    )
    manifest = anybind.embed(out, [held_out], tmp_path / "emb")
    assert manifest["counts"]["joint"] == manifest["counts"]["image"] == 48
    anybind.index(tmp_path / "emb", kind="flat")
    hits = anybind.search(out, tmp_path / "emb", text=["a picture of two"], to="joint", k=5)
    labels = [h["label"] for h in hits[0]["hits"]]
    assert labels.count(CLASS_NAMES.index("two")) >= 4, labels
    from fastapi.testclient import TestClient

    from anybind.serve.run import build_app

    with TestClient(build_app(out, tmp_path / "emb")) as client:  # and the server serves it
        query = {"text": "a picture of two", "to": "joint", "k": 5}
        response = client.post("/search", json=query)
        assert response.status_code == 200, response.text
        served = response.json()["results"][0]["results"]["joint"]
        assert [h["id"] for h in served] == [h["id"] for h in hits[0]["hits"]]


def test_an_absent_modality_can_enter_the_fusion_as_its_prediction(base, tmp_path):
    ext = fusion_extension(base, kind="mean", steps=10, fill="predicted")
    ext["predictor"] = {"modalities": ["image", "sketch"], "kind": "mlp", "hidden": 16}
    out = tmp_path / "filled"
    extend(base / "run", ext, out, progress=False)
    space = load_space(out)
    g = torch.Generator().manual_seed(2)
    image, sketch = torch.rand(2, 1, 8, 8, generator=g), torch.rand(2, 1, 8, 8, generator=g)
    with torch.no_grad():
        ei, es = space.embed("image", image), space.embed("sketch", sketch)
        masks = {"image": torch.tensor([True, True]), "sketch": torch.tensor([True, False])}
        joint, has = space.fuse({"image": ei, "sketch": es}, masks)
        predicted = space.predictor({"image": ei}, {"image": masks["image"]})  # type: ignore[misc]
    estimate = predicted["sketch_predicted"][0]
    F = torch.nn.functional
    torch.testing.assert_close(joint[0], F.normalize(ei[0] + es[0], dim=0))  # both present
    torch.testing.assert_close(joint[1], F.normalize(ei[1] + estimate[1], dim=0))  # filled
    assert has.all()


def test_the_joint_embedding_adapts_with_a_probe_and_refuses_a_tower_method(base, tmp_path):
    """`--modality joint`: a linear probe over the fused embeddings, scored on the held-out
    part; `anybind eval --adapter` then scores the joint embedding with the probe's head, away
    from the adaptation samples. A method that tunes a tower is refused with the reason."""
    from anybind.adapt.store import adaptation_ids, adapted_classifiers, load_adapted
    from anybind.api import adapt_run
    from anybind.config.schema import ArraysSource
    from anybind.errors import AnybindError
    from anybind.recipes.evaluate import evaluate_sources

    out = tmp_path / "mean"
    extend(base / "run", fusion_extension(base, kind="mean"), out, progress=False)
    data = [ArraysSource(type="arrays", path=str(base / "tiny.npz"),
                         keys={"image": "images", "sketch": "sketch"})]  # fmt: skip
    result = adapt_run(out, "linear-probe", data, modality="joint", shots=4, out=tmp_path / "lp")
    assert result["modality"] == "joint" and result["train_samples"] == 16
    assert result["split"]["eval_samples"] == 47  # the stratified half of 96
    assert result["zero_shot"]["top1"] > 0.25 and result["adapted"]["top1"] > 0.25
    space, adaptation = load_adapted(tmp_path / "lp", out)
    assert adaptation.modality == "joint" and adaptation.head.shape == (4, 16)
    heads, seen = adapted_classifiers(space, adaptation), adaptation_ids(tmp_path / "lp")
    report = evaluate_sources(space, data, classifiers=heads, exclude_ids=seen, progress=False)
    plain = evaluate_sources(space, data, exclude_ids=seen, progress=False)
    assert report["zero_shot"]["joint"]["n"] == 47  # the evaluation half only
    # the adapter's own score of its held-out part, and the zero-shot one without the head
    assert report["zero_shot"]["joint"]["top1"] == pytest.approx(result["adapted"]["top1"])
    assert plain["zero_shot"]["joint"]["top1"] == pytest.approx(result["zero_shot"]["top1"])
    assert report["zero_shot"]["image"] == plain["zero_shot"]["image"]  # only the joint's head
    with pytest.raises(AnybindError, match="tunes a tower"):
        adapt_run(out, "tent", data, modality="joint", out=tmp_path / "tent")
    with pytest.raises(AnybindError, match="no such modality"):
        adapt_run(out, "linear-probe", data, modality="jiont", shots=4)
