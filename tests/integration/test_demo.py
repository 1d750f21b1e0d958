"""The built-in benchmark end to end, shrunk: few voices, one epoch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from anybind.data.digits.images import mnist_to_uci, uci_digits
from anybind.recipes.demo import find_shared_data, run_demo

SMALL = [
    "data.train.0.train_voices=6",
    "data.train.0.test_voices=2",
    "data.train.0.stroke_images_per_class=20",
    "data.eval.0.train_voices=6",
    "data.eval.0.test_voices=2",
    "optim.epochs=2",
    "optim.warmup_steps=2",
]


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> tuple[Path, dict, str]:
    console = Console(record=True, width=120)
    out = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(out, overrides=SMALL, progress=False, console=console)
    return out, result, console.export_text()


def test_demo_runs_and_writes_metrics(small_demo):
    out, result, text = small_demo
    tmp_path = out.parent
    assert "Zero-shot classification" in text and "emergent" in text
    saved = json.loads((tmp_path / "demo" / "metrics.json").read_text())
    assert saved["metrics"] == result["metrics"]
    metrics = saved["metrics"]["in_domain"]
    for key in ("image_top1", "audio_top1", "image_to_audio_r1", "audio_to_image_r1"):
        assert 0.0 <= metrics[key] <= 1.0
    # what this small run learns (chance is 0.1): speech is bound to the text anchor (measured
    # 0.85 and 0.75); the stroke images, 20 a class for 2 epochs, are not yet (0.10)
    assert metrics["audio_top1"] > 0.5 and metrics["audio_to_text_r1"] > 0.5
    assert saved["reports"]["in-domain"]["retrieval"]["image->audio"]["emergent"] is True
    assert saved["reports"]["in-domain"]["retrieval"]["image->text"]["emergent"] is False
    assert saved["reports"]["in-domain"]["modalities"] == {"image": 540, "audio": 20, "text": 560}
    # the HTML report is written beside the metrics, and its path is printed
    page = (tmp_path / "demo" / "report.html").read_text()
    assert f"{tmp_path / 'demo' / 'report.html'}" in text.replace("\n", "")
    assert 'data-plot="retrieval"' in page and 'data-plot="confusion-image"' in page
    if find_shared_data() is not None:  # CI and developer machines have ../shared/data
        real = saved["reports"]["real"]
        assert real["modalities"] == {"image": 5000, "audio": 2000}
        assert real["zero_shot"]["audio"]["n"] == 2000
    assert set(saved["bars"]) == {
        "image zero-shot top-1 (held-out digits)",
        "audio zero-shot top-1 (held-out voices)",
        "emergent image→audio R@1 (match = same digit)",
    }


GROW_SMALL = [
    "data.train.0.drawings_per_class=30",
    "data.eval.0.drawings_per_class=10",
    "optim.epochs=null",
    "optim.steps=60",
    "optim.batch_size=64",
    "optim.warmup_steps=5",
]


def test_grow_demo_extends_the_demo_run_and_leaves_it_alone(small_demo):
    from anybind.checkpoint import file_sha256
    from anybind.recipes.grow_demo import run_grow_demo

    base, _, _ = small_demo
    before = file_sha256(base / "model.safetensors")
    console = Console(record=True, width=120)
    out = base.parent / "grow"
    result = run_grow_demo(
        out, base=base, overrides=GROW_SMALL, progress=False, console=console,
        self_train_options={"rounds": 2},
    )  # fmt: skip
    text = console.export_text()
    assert file_sha256(base / "model.safetensors") == before
    inside = result["metrics"]["in_domain"]
    # 300 drawings, 60 steps of 64 (chance 0.1): measured 0.77–0.92; the full demo: 0.96–0.99
    for m in ("timeseries", "pointcloud", "video"):
        assert inside[f"{m}_top1"] > 0.35, m
        assert f"{m} zero-shot top-1 (held-out drawings)" in text
    retrieval = result["reports"]["in-domain"]["retrieval"]
    assert retrieval["timeseries->audio"]["emergent"] is True
    assert retrieval["timeseries->text"]["emergent"] is False
    assert (out / "report.html").is_file() and json.loads((out / "metrics.json").read_text())
    if find_shared_data() is not None:
        real = result["reports"]["real"]
        assert real["zero_shot"]["timeseries"]["n"] == 7494
        assert "timeseries->audio" in real["retrieval"]
        assert 0 < result["metrics"]["self_train"]["top1"] <= 1
        assert (out / "adapters" / "pendigits-self-train" / "result.json").is_file()


def test_uci_split_is_stratified_and_disjoint():
    train_x, train_y = uci_digits("train")
    test_x, test_y = uci_digits("test")
    assert len(train_x) + len(test_x) == 1797
    assert np.bincount(test_y).min() >= 50  # ~30% of each class
    assert train_x.max() == 1.0 and train_x.min() == 0.0


def test_mnist_to_uci_counts_set_pixels_in_4x4_blocks():
    # a filled 20-pixel-tall, 10-wide bar: the box is scaled to 32 tall, 16 wide, centred
    image = np.zeros((1, 28, 28), dtype=np.uint8)
    image[0, 4:24, 9:19] = 255
    out = mnist_to_uci(image)[0] * 16
    expected = np.zeros((8, 8))
    expected[:, 2:6] = 16  # columns 8..23 of 32 are set: blocks 2..5 are full
    np.testing.assert_array_equal(out, expected)
    assert mnist_to_uci(np.zeros((1, 28, 28), dtype=np.uint8)).sum() == 0
