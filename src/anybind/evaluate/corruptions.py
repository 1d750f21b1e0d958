"""Corruptions of one modality at a level in [0, 1] (0: none), for robustness evaluation.

Each works on what one sample of the modality holds and draws its randomness from the generator
it is given, so a robustness report is a pure function of the data and the seed. Most act on
the decoded tensor; audio acts on the waveform before the modality's features (`stage: raw`),
since the speech embedding is computed from the waveform.

| modality | corruption | level 1 means |
|---|---|---|
| image | `gaussian_noise` | additive N(0, 0.5²) on [0, 1] pixels, clipped |
| image | `occlusion` | a random square of 60% of the side set to 0 |
| audio | `noise` | white noise at 0 dB SNR (level l: 30·(1 − l) dB) |
| audio | `time_mask` | a random 50% of the clip silenced |
| text | `word_drop` | each word dropped with probability 0.8 (one always stays) |
| timeseries | `jitter` | N(0, (0.3 · the series' std)²) on every real step |
| pointcloud | `point_dropout` | 90% of the points dropped (the rest repeated to keep the count) |
| video | `frame_drop` | each frame dropped with probability 0.9 (replaced by the previous kept) |
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from anybind.registry import Registry


@dataclass(frozen=True)
class Corruption:
    kind: str  # the modality kind it applies to
    stage: str  # "tensor": the decoded sample; "raw": the waveform before features
    apply: Callable[[Any, float, np.random.Generator], Any]


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def corruption(name: str, kind: str, stage: str = "tensor") -> Callable:
    def register(fn: Callable[[Any, float, np.random.Generator], Any]) -> Callable:
        CORRUPTIONS.register(name)(Corruption(kind, stage, fn))
        return fn

    return register


def for_kind(kind: str) -> dict[str, Corruption]:
    return {name: c for name, c in CORRUPTIONS.items() if c.kind == kind}


@corruption("gaussian_noise", "image")
def gaussian_noise(x: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    noise = torch.from_numpy(rng.normal(0.0, 0.5 * level, tuple(x.shape)).astype(np.float32))
    return (x + noise).clamp(0.0, 1.0)


@corruption("occlusion", "image")
def occlusion(x: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    h, w = x.shape[-2:]
    side = round(0.6 * level * min(h, w))
    if side == 0:
        return x
    top, left = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    out = x.clone()
    out[..., top : top + side, left : left + side] = 0.0
    return out


@corruption("noise", "audio", stage="raw")
def audio_noise(wave: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    if level == 0:
        return wave
    snr_db = 30.0 * (1.0 - level)
    power = float(np.mean(wave**2)) or 1e-12
    noise = rng.normal(0.0, np.sqrt(power / 10 ** (snr_db / 10)), wave.shape)
    return np.clip(wave + noise, -1.0, 1.0).astype(np.float32)


@corruption("time_mask", "audio", stage="raw")
def time_mask(wave: np.ndarray, level: float, rng: np.random.Generator) -> np.ndarray:
    span = int(0.5 * level * len(wave))
    if span == 0:
        return wave
    start = int(rng.integers(0, len(wave) - span + 1))
    out = wave.copy()
    out[start : start + span] = 0.0
    return out


@corruption("word_drop", "text")
def word_drop(text: str, level: float, rng: np.random.Generator) -> str:
    words = text.split()
    keep = [w for w in words if rng.random() >= 0.8 * level]
    return " ".join(keep or [words[int(rng.integers(len(words)))]]) if words else text


@corruption("jitter", "timeseries")
def series_jitter(x: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    values, mask = x[:-1], x[-1:]
    std = float(values[:, mask[0] > 0.5].std()) if bool((mask > 0.5).any()) else 0.0
    noise = torch.from_numpy(rng.normal(0.0, 0.3 * level * std, tuple(values.shape)))
    return torch.cat([(values + noise.float()) * mask, mask])


@corruption("point_dropout", "pointcloud")
def point_dropout(x: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    n = x.shape[0]
    keep = max(1, round(n * (1.0 - 0.9 * level)))
    chosen = np.sort(rng.permutation(n)[:keep])
    return x[torch.from_numpy(chosen[np.arange(n) % keep])]


@corruption("frame_drop", "video")
def frame_drop(x: torch.Tensor, level: float, rng: np.random.Generator) -> torch.Tensor:
    dropped = rng.random(x.shape[0]) < 0.9 * level
    dropped[0] = False  # the first frame always stays, so every drop has one to repeat
    index = np.maximum.accumulate(np.where(dropped, 0, np.arange(x.shape[0])))
    return x[torch.from_numpy(index)]


def area_under(levels: list[float], accuracy: list[float]) -> float:
    """MultiBench's relative robustness: the trapezoid area under accuracy over the levels,
    divided by the level range (1 for a model unaffected at accuracy 1)."""
    span = levels[-1] - levels[0]
    area = sum((a + b) / 2 * (y - x) for x, y, a, b in
               zip(levels, levels[1:], accuracy, accuracy[1:], strict=False))  # fmt: skip
    return area / span if span else accuracy[0]


def effective_robustness(curve: list[float], reference: list[float]) -> float:
    """MultiBench's effective robustness: the sum over levels of how far `curve` stays above
    `reference` shifted to the same clean accuracy (positive: it degrades more slowly)."""
    shift = curve[0] - reference[0]
    return float(sum(c - (r + shift) for c, r in zip(curve, reference, strict=True)))
