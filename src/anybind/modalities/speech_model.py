"""Google's pretrained speech embedding network (Lin et al. 2020, "Training Keyword Spotters with
Limited and Synthesized Speech Data"), ported to torch: 16 kHz waveform → (B, windows, 96). The
audio modality's `speech_embedding` representation runs it frozen; the `speech_embedding`
encoder puts it inside a tower.

The model was trained on a large speech corpus so that a small head on its embeddings learns new
keywords from few real or even synthesized examples — which is what a space bound on synthetic
speech needs in order to transfer to real recordings. Its two parts:

- front end: a 512-point STFT as two Conv1d banks (hop 160 = 10 ms, no padding), power, a 32-bin
  mel matrix, 10·log10 clamped at 1e-10 and at (per-clip maximum − 80 dB), then x/10 + 2 (the
  scaling its embedding network was trained on); the waveform is taken in 16-bit integer units.
- embedding network: windows of 76 frames (775 ms) every `window_step` frames; each window → a
  3×3 convolution, ReLU, BatchNorm, then 18 alternating 1×3 / 3×1 convolutions (BatchNorm folded
  in) each followed by LeakyReLU(0.2) floored at −0.4, with five max-pools among them, and a
  last 3×1 convolution → a 96-d vector per window.

Each clip is first scaled to a peak of `peak` full scale and gets a fixed (seeded) dither of
`dither` 16-bit units, so that loudness and digital silence do not differ between sources.

Weights: the ONNX files the openwakeword 0.4 wheel ships (`resources/models/melspectrogram.onnx`
and `embedding_model.onnx`, Apache-2.0), read as numpy arrays with `onnx`; `path` is that folder
or `package:openwakeword/resources/models`. Written by hand: the graph is 2 + 20 convolutions and
the one converter (onnx2torch) pulls torchvision; a test checks the port against onnxruntime.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from anybind.errors import ConfigError
from anybind.model_paths import resolve_model_path

SAMPLE_RATE = 16000
MEL_FILE = "melspectrogram.onnx"
EMBEDDING_FILE = "embedding_model.onnx"
WINDOW_FRAMES = 76
EMBED_DIM = 96
_HOP = 160
_N_FFT = 512
_INT16 = 32767.0
#: samples of one 76-frame window
MIN_SAMPLES = (WINDOW_FRAMES - 1) * _HOP + _N_FFT
_FIRST_CONV = "model/conv2d/StatefulPartitionedCall/StatefulPartitionedCall/Conv2D/ReadVariableOp:0"

# (index, kernel, padding, max-pool after) of the 18 convolutions between the first and the last;
# their ONNX initializers are `model/conv2d_<index>/Conv2D_weights_fused_bn` (and `_bias_...`)
_BLOCKS: tuple[tuple[int, tuple[int, int], tuple[int, int], tuple[int, int] | None], ...] = (
    (1, (1, 3), (0, 1), None),
    (2, (3, 1), (0, 0), (2, 2)),
    (3, (1, 3), (0, 1), None),
    (4, (3, 1), (0, 0), None),
    (5, (1, 3), (0, 1), None),
    (6, (3, 1), (0, 0), (1, 2)),
    (7, (1, 3), (0, 1), None),
    (8, (3, 1), (0, 0), None),
    (9, (1, 3), (0, 1), None),
    (10, (3, 1), (0, 0), (2, 2)),
    (11, (1, 3), (0, 1), None),
    (12, (3, 1), (0, 0), None),
    (13, (1, 3), (0, 1), None),
    (14, (3, 1), (0, 0), (1, 2)),
    (15, (1, 3), (0, 1), None),
    (16, (3, 1), (0, 0), None),
    (17, (1, 3), (0, 1), None),
    (18, (3, 1), (0, 0), (2, 2)),
)


def read_onnx_weights(path: Path) -> dict[str, np.ndarray]:
    """The initializers (named weight arrays) of an ONNX file; nothing is executed."""
    import onnx
    from onnx import numpy_helper

    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises its own DecodeError; onnx raises OSError
        raise ConfigError(f"cannot read ONNX weights from {path}: {exc}", key="path") from exc
    return {t.name: numpy_helper.to_array(t).copy() for t in model.graph.initializer}


class _Floor(nn.Module):
    """LeakyReLU(0.2) followed by max(·, −0.4), as the exported graph computes."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, 0.2).clamp_min(-0.4)


class SpeechEmbeddingModel(nn.Module):
    """The ported network: (B, samples) 16 kHz waveform in [-1, 1] → (B, windows, 96)."""

    def __init__(
        self,
        folder: str | Path,
        *,
        window_step: int = 8,
        peak: float = 0.5,
        dither: float = 5.0,
        max_samples: int = SAMPLE_RATE,
    ):
        super().__init__()
        if window_step < 1:
            raise ConfigError("window_step must be ≥ 1", key="window_step")
        folder = Path(folder)
        for name in (MEL_FILE, EMBEDDING_FILE):
            if not (folder / name).is_file():
                raise ConfigError(f"no {name} in {folder}", key="path")
        self.window_step, self.peak = window_step, peak
        mel = read_onnx_weights(folder / MEL_FILE)
        emb = read_onnx_weights(folder / EMBEDDING_FILE)
        try:
            self._build(mel, emb)
        except (KeyError, RuntimeError, ValueError) as exc:
            raise ConfigError(
                f"{folder} does not hold the speech embedding model: {exc}", key="path"
            ) from exc
        noise = torch.randn(max_samples, generator=torch.Generator().manual_seed(0)) * dither
        self.register_buffer("noise", noise, persistent=False)

    def _build(self, mel: dict[str, np.ndarray], emb: dict[str, np.ndarray]) -> None:
        t = torch.from_numpy
        # the STFT and mel matrix are fixed signal processing, not weights to tune: buffers
        self.register_buffer("stft_real", t(mel["0.stft.conv_real.weight"]))
        self.register_buffer("stft_imag", t(mel["0.stft.conv_imag.weight"]))
        self.register_buffer("mel_matrix", t(mel["1.melW"]))
        first = nn.Conv2d(1, 24, 3, bias=False)
        first.weight.data.copy_(t(emb[_FIRST_CONV]))
        bn = nn.BatchNorm2d(24, eps=1e-3)
        p = "model/batch_normalization/"
        bn.weight.data.copy_(t(emb[p + "ReadVariableOp:0"]))
        bn.bias.data.copy_(t(emb[p + "ReadVariableOp_1:0"]))
        bn.running_mean.copy_(t(emb[p + "FusedBatchNormV3/ReadVariableOp:0"]))
        bn.running_var.copy_(t(emb[p + "FusedBatchNormV3/ReadVariableOp_1:0"]))
        layers: list[nn.Module] = [first, nn.ReLU(), bn, _Floor()]
        for index, kernel, padding, pool in _BLOCKS:
            w = t(emb[f"model/conv2d_{index}/Conv2D_weights_fused_bn"])
            conv = nn.Conv2d(w.shape[1], w.shape[0], kernel, padding=padding)
            conv.weight.data.copy_(w)
            conv.bias.data.copy_(t(emb[f"model/conv2d_{index}/Conv2D_bias_fused_bn"]))
            layers += [conv, _Floor()]
            if pool is not None:
                layers.append(nn.MaxPool2d(pool, pool))
        last = nn.Conv2d(96, EMBED_DIM, (3, 1), bias=False)
        last.weight.data.copy_(t(emb["model/conv2d_19/Conv2D/ReadVariableOp:0"]))
        layers.append(last)
        self.network = nn.Sequential(*layers)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, samples) in 16-bit units → (B, frames, 32), before the x/10 + 2 scaling."""
        x = wave[:, None]
        power = F.conv1d(x, self.stft_real, stride=_HOP) ** 2
        power = power + F.conv1d(x, self.stft_imag, stride=_HOP) ** 2  # (B, 257, frames)
        mel = power.transpose(1, 2) @ self.mel_matrix  # (B, frames, 32)
        db = 10.0 * torch.log10(mel.clamp_min(1e-10))
        top = db.amax(dim=(1, 2), keepdim=True)
        return torch.maximum(db, top - 80.0)

    def window_embeddings(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 76, 32) scaled log-mel windows → (N, 96)."""
        x = F.pad(features[:, None], (1, 1))  # zero padding of the mel axis, as exported
        return self.network(x).flatten(1)

    def prepare(self, wave: torch.Tensor) -> torch.Tensor:
        """Peak-normalise, convert to 16-bit units and add the fixed dither."""
        if self.peak > 0:
            scale = self.peak / wave.abs().amax(dim=1, keepdim=True).clamp_min(1e-8)
            wave = wave * scale
        wave = wave * _INT16
        n = min(wave.shape[1], self.noise.shape[0])
        return torch.cat([wave[:, :n] + self.noise[:n], wave[:, n:]], dim=1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        wave = wave.to(self.stft_real.dtype)
        if wave.ndim != 2:
            raise ValueError(f"the speech embedding takes (B, samples), got {tuple(wave.shape)}")
        features = self.log_mel(self.prepare(wave)) / 10.0 + 2.0  # (B, frames, 32)
        windows = features.unfold(1, WINDOW_FRAMES, self.window_step)  # (B, W, 32, 76)
        b, w = windows.shape[:2]
        vectors = self.window_embeddings(windows.transpose(2, 3).reshape(b * w, WINDOW_FRAMES, 32))
        return vectors.view(b, w, EMBED_DIM)


def window_count(samples: int, window_step: int) -> int:
    """Windows the network yields for a clip of `samples` samples (0 if shorter than one)."""
    frames = (samples - _N_FFT) // _HOP + 1
    return max(0, (frames - WINDOW_FRAMES) // window_step + 1)


@lru_cache(maxsize=4)
def shared_model(path: str, window_step: int = 8) -> SpeechEmbeddingModel:
    """One frozen instance per (folder, step), for preprocessing (the audio modality's
    `speech_embedding` representation)."""
    model = SpeechEmbeddingModel(
        resolve_model_path(path, required=MEL_FILE), window_step=window_step
    )
    return model.eval().requires_grad_(False)
