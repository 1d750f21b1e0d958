"""`anybind extend`: a new modality trained against a frozen run. The base run's files and
tensors stay bit-identical, the extended run stores only the new tower, loads, evaluates and
can be extended again, and the binding really aligns the new modality."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import CLASS_NAMES, tiny_config
from safetensors.torch import load_file
from typer.testing import CliRunner

from anybind.cli.main import app
from anybind.config import config_from_dict
from anybind.data.digits import drawings as pen
from anybind.errors import AnybindError, ConfigError, TrainingError
from anybind.recipes.extend import extend, extended_config
from anybind.recipes.train import train
from anybind.space import load_space


def write_pen(path: Path, per_class: int, seed: int) -> Path:
    """Synthetic pen trajectories of the digits 0–3 (the tiny task's classes) with captions."""
    drawn, labels = pen.drawings(per_class, seed=seed)
    keep = labels < len(CLASS_NAMES)
    series = np.stack([pen.trajectory(d) for d, k in zip(drawn, keep, strict=True) if k])
    labels = labels[keep]
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    np.savez(path, series=series, labels=labels, captions=captions)
    return path


def extension(train_npz: Path, eval_npz: Path, steps: int = 60, **changes) -> dict:
    config = {
        "modalities": {
            "pen": {
                "kind": "timeseries",
                "options": {"channels": 2, "length": 8, "scale": 100.0},
                "encoder": {"type": "series_cnn", "width": 16, "stages": 1},
            }
        },
        "anchors": ["text"],
        "data": {
            "train": [
                {
                    "type": "arrays",
                    "path": str(train_npz),
                    "keys": {"pen": "series", "text": "captions"},
                }
            ],
            "eval": [{"type": "arrays", "path": str(eval_npz), "keys": {"pen": "series"}}],
        },  # fmt: skip
        "optim": {"lr": 0.003, "steps": steps, "batch_size": 32, "warmup_steps": 2},
        "train": {"checkpoint_every": 20, "log_every": 10},
        "eval": {"templates": {"pen": ["a picture of {}"]}},
    }
    config.update(changes)
    return config


def file_hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    from conftest import heldout_of, write_tiny

    root = tmp_path_factory.mktemp("base")
    write_tiny(heldout_of(root / "tiny.npz"), 48, seed=1)
    npz = write_tiny(root / "tiny.npz", 96)
    train(config_from_dict(tiny_config(npz, **{"optim.steps": 60})), root / "run", progress=False)
    write_pen(root / "pen.npz", 30, seed=0)
    write_pen(root / "pen-heldout.npz", 10, seed=1)
    return root


@pytest.fixture(scope="module")
def extended(base, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    before = file_hashes(base / "run")
    out = tmp_path_factory.mktemp("ext") / "run"
    extend(base / "run", extension(base / "pen.npz", base / "pen-heldout.npz"), out, progress=False)
    return out, before


def test_the_base_run_is_left_bit_identical(base, extended):
    out, before = extended
    assert file_hashes(base / "run") == before


def test_the_extended_run_stores_only_the_new_tower(extended):
    out, _ = extended
    keys = load_file(str(out / "model.safetensors"))
    assert keys and all(k.startswith("towers.pen.") for k in keys)


def test_base_embeddings_of_a_fixed_batch_are_identical(base, extended):
    out, _ = extended
    old, new = load_space(base / "run"), load_space(out)
    images = torch.rand(5, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    texts = ["a picture of two", "zero"]
    with torch.no_grad():
        assert torch.equal(old.embed("image", images), new.embed("image", images))
        assert torch.equal(old.embed("text", texts), new.embed("text", texts))
    assert torch.equal(old.log_logit_scale, new.log_logit_scale)
    for key, value in old.state_dict().items():
        assert torch.equal(value, new.state_dict()[key]), key


def test_the_binding_aligns_the_new_modality(extended):
    from anybind.api import load_run

    out, _ = extended
    report = load_run(out).evaluate()
    assert report["zero_shot"]["pen"]["top1"] > 0.8  # chance 0.25, never seen these drawings
    first = float((out / "metrics.jsonl").read_text().splitlines()[0].split('"loss": ')[1][:6])
    assert first > 2.5


def test_evaluation_marks_the_base_pairs_as_trained(extended):
    config = load_space(extended[0]).config
    trained = {frozenset(p) for p in config.trained_pairs()}
    assert trained == {frozenset(("image", "text")), frozenset(("pen", "text"))}


def test_a_changed_base_tensor_fails_the_run(base, tmp_path):
    from anybind.run_status import read_status

    config = extended_config(
        base / "run", extension(base / "pen.npz", base / "pen-heldout.npz", steps=4), tmp_path / "r"
    )

    def tamper(step: int) -> None:
        if step == 2:
            with torch.no_grad():
                space = tamper.space  # type: ignore[attr-defined]
                space.towers["image"].projection.weight.add_(1e-3)

    import anybind.recipes.train as recipe

    real_setup = recipe.setup

    def setup(*args, **kwargs):
        run = real_setup(*args, **kwargs)
        tamper.space = run.space  # type: ignore[attr-defined]
        return run

    recipe.setup = setup
    try:
        with pytest.raises(TrainingError, match="base run's tensors changed"):
            train(config, tmp_path / "r", progress=False, after_step=tamper)
    finally:
        recipe.setup = real_setup
    assert read_status(tmp_path / "r").state == "failed"


def test_a_base_whose_weights_changed_is_refused(base, extended, tmp_path):
    import shutil

    copy = tmp_path / "base"
    shutil.copytree(base / "run", copy)
    out = tmp_path / "ext"
    ext = extension(base / "pen.npz", base / "pen-heldout.npz", steps=2)
    extend(copy, ext, out, progress=False)
    state = load_file(str(copy / "model.safetensors"))
    from safetensors.torch import save_file

    state["log_logit_scale"] = state["log_logit_scale"] + 1
    save_file(state, str(copy / "model.safetensors"))
    with pytest.raises(AnybindError, match="base run changed"):
        load_space(out)


def test_an_extended_run_can_be_extended_again(base, extended, tmp_path):
    out, _ = extended
    again = extension(base / "pen.npz", base / "pen-heldout.npz", steps=2)
    again["modalities"] = {"pen2": {**again["modalities"]["pen"]}}
    again["anchors"] = ["text", "pen"]
    for split in ("train", "eval"):
        for source in again["data"][split]:
            source["keys"] = {
                "pen2": "series",
                **({"text": "captions"} if split == "train" else {}),
            }
    again["eval"] = {"templates": {"pen2": ["a picture of {}"]}}
    train_again = tmp_path / "again"
    extend(out, again, train_again, progress=False)
    space = load_space(train_again)
    assert set(space.towers) == {"image", "text", "pen", "pen2"}
    assert space.config.pairs() == [("pen2", "text"), ("pen2", "pen")]
    assert all(
        k.startswith("towers.pen2.") for k in load_file(str(train_again / "model.safetensors"))
    )
    first = load_space(out)
    x = torch.from_numpy(np.load(base / "pen.npz")["series"][:4])
    with torch.no_grad():
        batch = torch.stack([first.towers["pen"].modality.load(s) for s in x])
        assert torch.equal(first.embed("pen", batch), space.embed("pen", batch))


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        ({"modalities": {"image": {"encoder": {"type": "image_cnn"}}}}, "modalities.image",
         "already a modality of the base"),
        ({"anchors": ["audio"]}, "anchors", "not a modality of the base run"),
        ({"extra": 1}, "extra", "not a section of an extension"),
        ({"objective": {"pairs": [["image", "text"]]}}, "objective.pairs", "both base modalities"),
    ],
)  # fmt: skip
def test_a_bad_extension_is_named(base, tmp_path, change, key, message):
    ext = {**extension(base / "pen.npz", base / "pen-heldout.npz"), **change}
    with pytest.raises(ConfigError, match=message) as info:
        extended_config(base / "run", ext, tmp_path / "x")
    assert info.value.key == key or key in str(info.value)


def test_the_cli_extends_and_says_where(base, tmp_path):
    import yaml

    path = tmp_path / "ext.yaml"
    path.write_text(yaml.safe_dump(extension(base / "pen.npz", base / "pen-heldout.npz", steps=2)))
    result = CliRunner().invoke(
        app, ["extend", str(base / "run"), "--config", str(path), "--out", str(tmp_path / "o"),
              "--quiet"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "extended" in result.output and (tmp_path / "o" / "model.safetensors").is_file()
    bad = CliRunner().invoke(
        app, ["extend", str(tmp_path / "nope"), "--config", str(path), "--out", str(tmp_path / "p")]
    )
    assert bad.exit_code == 2 and "not a run folder" in bad.output


def test_a_new_tower_can_start_from_a_base_encoder_with_lora(base, tmp_path):
    """OneEncoder / ONE-PEACE style: the new tower's encoder is the base image encoder, frozen,
    with LoRA and a new projection trained."""
    ext = extension(base / "pen.npz", base / "pen-heldout.npz", steps=20)
    ext["modalities"] = {
        "sketch": {
            "kind": "image",
            "options": {"size": [8, 8]},
            "encoder": {"type": "image_cnn", "width": 8, "stages": 2},
            "init_from": "image",
            "tuner": {"type": "lora", "r": 2},
        }
    }
    for split in ("train", "eval"):
        for source in ext["data"][split]:
            source["path"] = str(base / ("tiny.npz" if split == "train" else "tiny-heldout.npz"))
            source["keys"] = {
                "sketch": "images",
                **({"text": "captions"} if split == "train" else {}),
            }
    ext["eval"] = {"templates": {"sketch": ["a picture of {}"]}}
    out = tmp_path / "sketch"
    extend(base / "run", ext, out, progress=False)
    stored = load_file(str(out / "model.safetensors"))
    assert any("lora_B" in k for k in stored)
    assert any(v.abs().sum() > 0 for k, v in stored.items() if "lora_B" in k)  # LoRA trained
    image = load_space(base / "run").towers["image"].encoder.state_dict()
    for key, value in image.items():  # the frozen copy of the base encoder did not move
        lora_key = f"towers.sketch.encoder.{key}".replace(".weight", ".base_layer.weight")
        assert torch.equal(stored.get(lora_key, stored.get(f"towers.sketch.encoder.{key}")), value)
    from anybind.api import load_run

    assert load_run(out).evaluate()["zero_shot"]["sketch"]["top1"] > 0.8


@pytest.mark.parametrize(
    "objective",
    [
        {"type": "siglip"},
        {"type": "cwcl", "anchor": "text"},
        {"type": "symile"},
    ],
)
def test_any_objective_can_bind(base, tmp_path, objective):
    """The binding objective is any of the toolkit's; the base stays bit-identical and the new
    tower learns (a flipped loss would not)."""
    from anybind.api import load_run

    before = file_hashes(base / "run")
    ext = extension(base / "pen.npz", base / "pen-heldout.npz", steps=60, objective=objective)
    config = extended_config(base / "run", ext, tmp_path / "o")
    expected = [("pen", "text")]
    assert config.pairs() == expected
    anybind_extend = __import__("anybind").extend
    anybind_extend(base / "run", ext, tmp_path / "o")
    assert file_hashes(base / "run") == before
    assert load_run(tmp_path / "o").evaluate()["zero_shot"]["pen"]["top1"] > 0.6


def test_the_extended_run_embeds_indexes_and_searches(base, extended, tmp_path):
    """Text queries find pen trajectories of the named digit through the extended run."""
    import anybind
    from anybind.config.schema import ArraysSource

    out, _ = extended
    held_out = ArraysSource(path=str(base / "pen-heldout.npz"), keys={"pen": "series"})
    anybind.embed(out, [held_out], tmp_path / "emb")
    anybind.index(tmp_path / "emb", kind="flat")
    hits = anybind.search(out, tmp_path / "emb", text=["a picture of two"], to="pen", k=5)
    labels = [h["label"] for h in hits[0]["hits"]]
    assert len(labels) == 5 and labels.count(CLASS_NAMES.index("two")) >= 4, labels
