"""`anybind init`: a run from a pretrained CLIP's towers, projections and logit scale, untrained.

A tiny random `CLIPModel` (seeded, with a logit scale unlike the space's default) and a genuine
byte-level `CLIPTokenizer` (the byte alphabet, its "</w>" forms, a few merges, CLIP's special
tokens) are saved with `save_pretrained`; the towers are loaded back by the real
`from_pretrained`. Every number is compared with what transformers' `CLIPModel` itself computes.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from fastapi.testclient import TestClient
from safetensors.torch import load_file
from transformers import CLIPConfig, CLIPModel, CLIPTokenizer, CLIPVisionConfig, CLIPVisionModel
from typer.testing import CliRunner

from anybind.checkpoint import WEIGHTS
from anybind.cli.main import app
from anybind.config import load_config
from anybind.encoders.hf_clip import CLIPText, CLIPVision, read_logit_scale
from anybind.encoders.hf_vision import CLIP_MEAN, CLIP_STD, HFVision
from anybind.errors import AnybindError, ConfigError
from anybind.modalities.image import ImageModality, ImageOptions
from anybind.modalities.text import TextModality
from anybind.recipes.init import TRAINING_PLACEHOLDER, init_run, read_init
from anybind.run_status import read_status
from anybind.space import load_space

runner = CliRunner()
SCALE = 3.3  # log(1/τ); the space's default (τ = 0.07) would be 2.659, CLIP's default init too
MERGES = ["c a", "ca t</w>", "d o", "do g</w>", "p h", "o t", "ph ot", "phot o</w>"]
CLASSES = ["cat", "dog", "photo", "car"]
TEMPLATES = ["a photo of a {}", "a {}"]
TEXTS = ["a photo of a cat", "dog", "a cat and a dog on a car in the photo of a photo"]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's (and CLIP's) reversible map from bytes to printable characters."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    keep += range(ord("®"), ord("ÿ") + 1)
    chars, extra = list(keep), 0
    for b in range(256):
        if b not in keep:
            keep.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def tiny_tokenizer() -> CLIPTokenizer:
    alphabet = list(bytes_to_unicode().values())
    tokens = alphabet + [c + "</w>" for c in alphabet] + ["".join(m.split()) for m in MERGES]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    merges = [tuple(m.split()) for m in MERGES]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny_clip")
    tokenizer = tiny_tokenizer()
    tokenizer.save_pretrained(folder)
    tiny = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37)
    torch.manual_seed(0)
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            max_position_embeddings=16,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **tiny,
        ),
        vision_config=dict(image_size=32, patch_size=8, **tiny),
        projection_dim=16,
    )
    model = CLIPModel(config)
    with torch.no_grad():
        model.logit_scale.fill_(SCALE)
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def clip(tiny_clip: Path) -> CLIPModel:
    return CLIPModel.from_pretrained(tiny_clip).eval()


def pooled(out: Any) -> torch.Tensor:
    """get_*_features returns the projected tensor, or (transformers ≥ 5) an output holding it."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


@torch.no_grad()
def clip_images(clip: CLIPModel, images: torch.Tensor) -> torch.Tensor:
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return F.normalize(pooled(clip.get_image_features(pixel_values=(images - mean) / std)), dim=-1)


@torch.no_grad()
def clip_texts(clip: CLIPModel, folder: Path, texts: list[str]) -> torch.Tensor:
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=16, return_tensors="pt")
    return F.normalize(pooled(clip.get_text_features(**enc)), dim=-1)


def init_config(folder: Path, **changes: Any) -> dict[str, Any]:
    """An init config: towers only (no data.train, no optim), plus classes and templates."""
    config: dict[str, Any] = {
        "modalities": {
            "image": {
                "options": {"size": [32, 32], "channels": 3},
                "encoder": {"type": "clip_vision", "path": str(folder)},
                "projection": {"type": "identity"},
                "freeze_encoder": True,
            },
            "text": {
                "encoder": {"type": "clip_text", "path": str(folder)},
                "projection": {"type": "identity"},
                "freeze_encoder": True,
            },
        },
        "space": {"dim": 16},
        "data": {"class_names": CLASSES},
        "eval": {"templates": {"image": TEMPLATES}},
    }
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return config


def write_config(path: Path, config: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def run(tiny_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("init")
    return init_run(write_config(root / "clip.yaml", init_config(tiny_clip)), root / "run")


@pytest.fixture(scope="module")
def target(run: Path) -> tuple[Path, torch.Tensor, np.ndarray]:
    """24 labelled images in [0, 1] (an .npz beside the run) with captions."""
    gen = torch.Generator().manual_seed(3)
    images = torch.rand(24, 3, 32, 32, generator=gen)
    labels = np.arange(24) % len(CLASSES)
    captions = np.array([f"a photo of a {CLASSES[y]}" for y in labels])
    path = run.parent / "target.npz"
    np.savez(path, images=images.numpy(), labels=labels, captions=captions)
    return path, images, labels


# --------------------------------------------------------------------------------- the towers


def test_the_towers_are_clip_features_with_projections(tiny_clip: Path, clip: CLIPModel) -> None:
    vision = CLIPVision(
        CLIPVision.Options(path=str(tiny_clip)),
        ImageModality(ImageOptions(channels=3, size=(32, 32))),
    ).eval()
    text = CLIPText(CLIPText.Options(path=str(tiny_clip)), TextModality()).eval()
    assert vision.embed_dim == text.embed_dim == 16 and vision.pretrained and text.pretrained
    assert isinstance(vision, HFVision)  # hf_vision's pixel handling, and its VPT prompts
    assert not any(n.startswith("text") for n, _ in vision.model.named_parameters())
    images = torch.rand(3, 3, 32, 32)
    mean, std = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1), torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    with torch.no_grad():
        got_images, got_texts = vision(images), text(TEXTS)
        want_images = pooled(clip.get_image_features(pixel_values=(images - mean) / std))
    torch.testing.assert_close(got_images, want_images, atol=1e-5, rtol=1e-5)
    enc = CLIPTokenizer.from_pretrained(tiny_clip)(
        TEXTS, padding=True, truncation=True, max_length=16, return_tensors="pt"
    )
    assert enc["input_ids"].shape[1] == 16  # the long text really was cut to the 16 positions
    with torch.no_grad():
        want_texts = pooled(clip.get_text_features(**enc))
    torch.testing.assert_close(got_texts, want_texts, atol=1e-5, rtol=1e-5)
    assert read_logit_scale(str(tiny_clip)).item() == pytest.approx(SCALE, abs=1e-6)


def test_tower_errors_name_the_key(tiny_clip: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="encoder.max_length.*17 tokens.*16 positions"):
        CLIPText(CLIPText.Options(path=str(tiny_clip), max_length=17), TextModality())
    with pytest.raises(ConfigError, match=r"encoder.path.*no model folder at '/no/such/clip'"):
        CLIPText(CLIPText.Options(path="/no/such/clip"), TextModality())
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ConfigError, match="'bert' model, not a CLIP vision tower"):
        CLIPVision(CLIPVision.Options(path=str(tmp_path)), ImageModality(ImageOptions()))
    bare = tmp_path / "bare"  # a vision tower saved without its projection is not aligned
    CLIPVisionModel(CLIPVisionConfig(image_size=32, patch_size=8, hidden_size=32,
                                     num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=37)).save_pretrained(bare)  # fmt: skip
    with pytest.raises(ConfigError, match="no trained vision projection.*visual_projection"):
        CLIPVision(CLIPVision.Options(path=str(bare)), ImageModality(ImageOptions()))


# ----------------------------------------------------------------------------------- the run


def test_init_writes_a_complete_untrained_run_with_clips_scale(
    run: Path, tiny_clip: Path, clip: CLIPModel
) -> None:
    assert read_status(run).complete and read_status(run).step == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 0 and summary["train_samples"] == 0 and summary["final_loss"] is None
    record = read_init(run)
    assert record["towers"]["image"] == {"type": "clip_vision", "path": str(tiny_clip),
                                         "embed_dim": 16}  # fmt: skip
    assert (run / "environment.json").is_file()
    # no tower weights in the folder: the logit scale is all it holds
    weights = load_file(run / WEIGHTS)
    assert set(weights) == {"log_logit_scale"} and (run / WEIGHTS).stat().st_size < 1024
    assert weights["log_logit_scale"].item() == clip.logit_scale.item()  # bit for bit
    space = load_space(run)
    assert space.logit_scale().item() == pytest.approx(math.exp(SCALE), rel=1e-6)
    assert space.logit_scale().item() == pytest.approx(clip.logit_scale.exp().item(), rel=1e-6)
    # the saved config loads and builds the same space; it says the same temperature
    saved = load_config(run / "config.yaml")
    assert saved.model_dump() == space.config.model_dump()
    assert saved.space.init_temperature == pytest.approx(math.exp(-SCALE), rel=1e-6)
    assert saved.data.train[0].path == str(Path(run.parent, TRAINING_PLACEHOLDER))
    assert saved.optim.epochs == 1


def test_the_run_embeds_as_clip_does(run: Path, tiny_clip: Path, clip: CLIPModel) -> None:
    import anybind

    loaded = anybind.load_run(run)
    images = torch.rand(5, 3, 32, 32)
    got = loaded.embed("image", list(images.numpy()))
    torch.testing.assert_close(got, clip_images(clip, images), atol=1e-5, rtol=1e-5)
    got = loaded.embed("text", TEXTS)
    torch.testing.assert_close(got, clip_texts(clip, tiny_clip, TEXTS), atol=1e-5, rtol=1e-5)
    logits = loaded.similarity(got[:1], got)
    expected = math.exp(SCALE) * clip_texts(clip, tiny_clip, TEXTS[:1]) @ got.T
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-5)


def test_eval_cli_zero_shot_is_clips_prediction(
    run: Path, target: tuple[Path, torch.Tensor, np.ndarray], tiny_clip: Path, clip: CLIPModel
) -> None:
    path, images, labels = target
    out = run.parent / "eval.json"
    result = runner.invoke(
        app,
        ["eval", str(run), "--data", str(path), "--keys", "image=images"]
        + ["--keys", "text=captions", "--json", str(out), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    prompts = [t.format(c) for c in CLASSES for t in TEMPLATES]
    prompt_emb = clip_texts(clip, tiny_clip, prompts).view(len(CLASSES), len(TEMPLATES), -1)
    classes = F.normalize(prompt_emb.mean(1), dim=-1)
    predicted = (clip_images(clip, images) @ classes.T).argmax(1).numpy()
    confusion = np.zeros((len(CLASSES),) * 2, dtype=int)
    np.add.at(confusion, (labels, predicted), 1)
    zero_shot = report["zero_shot"]["image"]
    assert zero_shot["confusion"] == confusion.tolist()
    assert zero_shot["top1"] == pytest.approx(float((predicted == labels).mean()))
    assert report["samples"] == 24 and "image->text" in report["retrieval"]


def test_linear_probe_adapts_the_init_run(
    run: Path, target: tuple[Path, torch.Tensor, np.ndarray]
) -> None:
    path, _, _ = target
    record_path = run.parent / "probe.json"
    base = (run / WEIGHTS).read_bytes()
    result = runner.invoke(
        app,
        ["adapt", str(run), "--method", "linear-probe", "--data", str(path)]
        + ["--keys", "image=images", "--shots", "2", "--out", str(run.parent / "probe")]
        + ["--json", str(record_path), "--quiet"],
    )
    assert result.exit_code == 0, result.output
    record = json.loads(record_path.read_text())
    assert record["train_samples"] == 2 * len(CLASSES) and record["split"]["overlap"] == 0
    assert 0.0 <= record["adapted"]["top1"] <= 1.0
    assert (run / WEIGHTS).read_bytes() == base


def test_embed_index_and_serve_the_init_run(
    run: Path, target: tuple[Path, torch.Tensor, np.ndarray], tiny_clip: Path, clip: CLIPModel
) -> None:
    from anybind.api import embed
    from anybind.recipes.index import index_collection
    from anybind.search.index import IndexParams
    from anybind.serve.run import build_app

    path, _, _ = target
    emb = run.parent / "emb"
    manifest = embed(run, [str(path)], emb, keys=["image=images", "text=captions"],
                     dtype="float32")  # fmt: skip
    assert manifest["counts"] == {"image": 24, "text": 24}
    index_collection(emb, IndexParams("flat"))
    with TestClient(build_app(run, emb)) as client:
        response = client.post("/embed", json={"modality": "text", "inputs": TEXTS[:2]})
    assert response.status_code == 200, response.text
    got = torch.tensor(response.json()["embeddings"])
    torch.testing.assert_close(got, clip_texts(clip, tiny_clip, TEXTS[:2]), atol=1e-5, rtol=1e-5)


def test_init_cli_prints_the_run_and_refuses_a_used_folder(tiny_clip: Path, tmp_path: Path) -> None:
    config = write_config(tmp_path / "clip.yaml", init_config(tiny_clip))
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    result = runner.invoke(app, ["init", str(config), "--out", str(tmp_path / "empty")])
    assert result.exit_code == 0, result.output
    assert "initialised" in result.output and f"{math.exp(SCALE):.4g}" in result.output
    assert read_status(tmp_path / "empty").complete
    again = runner.invoke(app, ["init", str(config), "--out", str(tmp_path / "empty")])
    assert again.exit_code == 2 and "already exists and is not empty" in again.output
    assert not list(tmp_path.glob(".empty.init-*"))  # no temporary folder is left behind


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        (
            {"modalities.image.encoder.path": "/no/such/clip"},
            "key 'modalities.image.encoder.path'.*no model folder at '/no/such/clip'",
        ),  # fmt: skip
        (
            {"modalities.text.encoder": {"type": "text_bytes"}},
            "key 'modalities.text.encoder.type'.*'text_bytes' tower would stay",
        ),  # fmt: skip
        ({"modalities.image.freeze_encoder": False}, "key 'modalities.image.freeze_encoder'"),
        (
            {"modalities.text.projection": {"type": "linear"}},
            "key 'modalities.text.projection.type'.*'linear' projection would start random",
        ),
        ({"space.dim": 32}, "key 'space.dim'.*projection_dim 16"),
        ({"space.max_logit_scale": 20.0}, "key 'space.max_logit_scale'.*27.1126 is above 20"),
    ],
)
def test_init_refuses_what_would_not_be_clips_space(
    tiny_clip: Path, tmp_path: Path, changes: dict[str, Any], says: str
) -> None:
    config = write_config(tmp_path / "bad.yaml", init_config(tiny_clip, **changes))
    result = runner.invoke(app, ["init", str(config), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert len(result.output.strip().splitlines()) == 1 and "Traceback" not in result.output
    assert re.search(says, result.output), result.output
    assert not (tmp_path / "run").exists()


def test_init_takes_the_towers_of_one_checkpoint_only(tiny_clip: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(tiny_clip, copy)  # the same weights, but another checkpoint to init
    text_path = "modalities.text.encoder.path"
    config = write_config(tmp_path / "two.yaml", init_config(tiny_clip, **{text_path: str(copy)}))
    with pytest.raises(ConfigError, match="modalities.text.encoder.path.*only the towers of one"):
        init_run(config, tmp_path / "run")
    (tmp_path / "link").symlink_to(tiny_clip)  # the same folder by another name is one
    link = str(tmp_path / "link")
    config = write_config(tmp_path / "one.yaml", init_config(tiny_clip, **{text_path: link}))
    assert read_status(init_run(config, tmp_path / "run")).complete


def test_training_from_the_saved_config_names_the_missing_data(run: Path, tmp_path: Path) -> None:
    from anybind.recipes.train import train

    with pytest.raises(AnybindError, match=TRAINING_PLACEHOLDER):
        train(run / "config.yaml", tmp_path / "trained", progress=False)


def test_the_init_run_can_be_extended_with_a_new_modality(
    run: Path, target: tuple[Path, torch.Tensor, np.ndarray], tmp_path: Path
) -> None:
    """A pen-like series bound to the frozen CLIP text tower: the CLIP towers stay CLIP's."""
    from anybind.recipes.extend import extend

    _, images, labels = target
    series = np.stack([np.full((2, 8), 10.0 * y) + np.arange(8) for y in labels])
    captions = np.array([f"a photo of a {CLASSES[y]}" for y in labels])
    np.savez(tmp_path / "series.npz", series=series, labels=labels, captions=captions)
    extension = {
        "modalities": {
            "series": {
                "kind": "timeseries",
                "options": {"channels": 2, "length": 8, "scale": 100.0},
                "encoder": {"type": "series_cnn", "width": 8, "stages": 1},
            }
        },
        "data": {"train": [{"type": "arrays", "path": str(tmp_path / "series.npz"),
                            "keys": {"series": "series", "text": "captions"}}]},
        "optim": {"steps": 3, "batch_size": 8, "warmup_steps": 1},
    }  # fmt: skip
    extend(run, extension, tmp_path / "grown", progress=False)
    base, grown = load_space(run), load_space(tmp_path / "grown")
    with torch.no_grad():
        assert torch.equal(base.embed("image", images[:4]), grown.embed("image", images[:4]))
        assert torch.equal(base.embed("text", ["a cat"]), grown.embed("text", ["a cat"]))
    assert grown.logit_scale() == base.logit_scale()
    assert grown.embed("series", torch.zeros(1, 3, 8)).shape == (1, 16)
