"""Corruptions at a level: none at 0, seeded, and of the documented size; MultiBench's
robustness numbers against hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anybind.evaluate import corruptions as c


def rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


TENSORS = {
    "gaussian_noise": torch.full((1, 8, 8), 0.5),
    "occlusion": torch.ones(1, 10, 10),
    "jitter": torch.cat(
        [
            torch.randn(2, 8, generator=torch.Generator().manual_seed(0)) * (torch.arange(8) < 6),
            torch.tensor([[1.0] * 6 + [0.0] * 2]),
        ]
    ),  # a loaded series: zero padding after 6 real steps
    "point_dropout": torch.arange(60, dtype=torch.float32).view(20, 3),
    "frame_drop": torch.arange(8, dtype=torch.float32).view(8, 1, 1, 1).expand(8, 1, 2, 2),
}


@pytest.mark.parametrize("name", sorted(TENSORS))
def test_level_zero_changes_nothing_and_a_level_is_seeded(name):
    x, fn = TENSORS[name], c.CORRUPTIONS.get(name).apply
    assert torch.equal(fn(x, 0.0, rng()), x)
    assert torch.equal(fn(x, 0.7, rng(3)), fn(x, 0.7, rng(3)))
    assert not torch.equal(fn(x, 0.7, rng(3)), x)


def test_sizes_are_as_documented():
    noisy = c.gaussian_noise(torch.full((1, 64, 64), 0.5), 0.2, rng())
    assert abs(float(noisy.std()) - 0.1) < 0.01  # 0.5 · level, no clipping at 0.5 ± 0.3
    occluded = c.occlusion(torch.ones(1, 10, 10), 1.0, rng())
    assert int((occluded == 0).sum()) == 36  # a 6×6 square: 60% of the side
    wave = np.sin(np.linspace(0, 400, 16000)).astype(np.float32) * 0.5
    noise = c.audio_noise(wave, 0.5, rng()) - wave
    snr = 10 * np.log10(np.mean(wave**2) / np.mean(noise**2))
    assert abs(snr - 15.0) < 0.3  # 30 · (1 − level) dB
    masked = c.time_mask(np.ones(1000, dtype=np.float32), 0.4, rng())
    assert int((masked == 0).sum()) == 200  # 50% · level, one span
    assert c.word_drop("one two three", 1.0, rng(1)).split()  # a word always stays
    series = TENSORS["jitter"]
    jittered = c.series_jitter(series, 1.0, rng())
    assert torch.equal(jittered[-1], series[-1]) and jittered[:2, 6:].abs().sum() == 0
    points = c.point_dropout(TENSORS["point_dropout"], 1.0, rng())
    assert points.shape == (20, 3) and len(torch.unique(points, dim=0)) == 2  # 10% of 20
    frames = c.frame_drop(TENSORS["frame_drop"], 1.0, rng())
    index = frames[:, 0, 0, 0].long()
    assert index[0] == 0 and torch.all(index <= torch.arange(8))
    assert torch.all(index[1:] >= index[:-1])  # a dropped frame repeats the last kept one


def test_multibench_robustness_numbers():
    levels = [0.0, 0.5, 1.0]
    assert c.area_under(levels, [0.8, 0.8, 0.8]) == pytest.approx(0.8)
    assert c.area_under(levels, [1.0, 0.5, 0.0]) == pytest.approx(0.5)
    assert c.area_under([0.0, 0.2, 1.0], [1.0, 1.0, 0.0]) == pytest.approx(0.2 + 0.4)
    assert c.effective_robustness([0.9, 0.7, 0.5], [0.9, 0.7, 0.5]) == pytest.approx(0.0)
    assert c.effective_robustness([0.95, 0.75, 0.55], [0.9, 0.7, 0.5]) == pytest.approx(0.0)
    assert c.effective_robustness([0.9, 0.85, 0.8], [0.9, 0.7, 0.5]) == pytest.approx(0.45)


def test_every_corruption_names_a_registered_modality_kind():
    from anybind.modalities import MODALITIES

    kinds = {cor.kind for _, cor in c.CORRUPTIONS.items()}
    assert kinds <= set(MODALITIES)
    assert kinds == {"image", "audio", "text", "timeseries", "pointcloud", "video"}
