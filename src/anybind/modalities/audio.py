"""Audio modality: a sound → mono waveform at `sample_rate` → log-mel (n_mels, frames), float32.

Input: a WAV/FLAC/OGG file (soundfile), a 1-D float array taken to be a mono waveform at the
declared `sample_rate` with values in [-1, 1], or a dict {"waveform": array, "sample_rate": int}.
Multi-channel audio is averaged to mono; other rates are resampled (polyphase, scipy).

Output by `representation`:
- "log_mel": natural log of the mel power spectrogram + 1e-6, shape (n_mels, frames); a hop of
  `hop_length` samples per frame; the waveform is centred and zero-padded or centre-cropped to
  `frames` frames.
- "waveform": the raw waveform, shape (samples,) with samples = `max_seconds * sample_rate`,
  for encoders that take raw audio (wav2vec2, HuBERT).
- "speech_embedding": the waveform (centred in `max_seconds` at 16 kHz) through Google's frozen
  pretrained speech embedding network (`anybind.modalities.speech_model`, weights from
  `speech_model`): one 96-d vector per 775 ms window every `window_step` × 10 ms, shape
  (windows, 96). Computed once per clip at load time, so that training and adapting the small
  encoder on top is cheap; put the network inside the tower (encoder `speech_embedding`) to
  fine-tune it instead.
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from math import gcd
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import soundfile
import torch
import torch.nn.functional as F
from pydantic import model_validator

from anybind.errors import DataError
from anybind.feature_cache import FeatureCache
from anybind.modalities.base import (
    MODALITIES,
    EncodedFile,
    Modality,
    ModalityOptions,
    check_finite,
    numeric_array,
)
from anybind.modalities.speech_model import (
    EMBED_DIM,
    EMBEDDING_FILE,
    MEL_FILE,
    MIN_SAMPLES,
    SAMPLE_RATE,
    shared_model,
    window_count,
)
from anybind.model_paths import resolve_model_path
from anybind.options import Positive, Size

#: the largest sample magnitude accepted (float audio is within ±1, int16 PCM within 32768)
MAX_AMPLITUDE = 1e6


class AudioOptions(ModalityOptions):
    sample_rate: Size = 8000
    representation: Literal["log_mel", "waveform", "speech_embedding"] = "log_mel"
    n_mels: Size = 40
    n_fft: Size = 256
    hop_length: Size = 128
    frames: Size = 64
    max_seconds: Positive = 1.0
    f_min: float = 20.0
    f_max: float | None = None
    #: speech_embedding only: the folder of the pretrained model, and the step between windows
    speech_model: str = "package:openwakeword/resources/models"
    window_step: Size = 8

    @model_validator(mode="after")
    def _speech_embedding_rate(self) -> AudioOptions:
        if self.representation == "speech_embedding":
            if self.sample_rate != SAMPLE_RATE:
                raise ValueError(
                    f"representation 'speech_embedding' needs sample_rate {SAMPLE_RATE}"
                )
            if self.max_seconds * SAMPLE_RATE < MIN_SAMPLES:
                raise ValueError(
                    f"representation 'speech_embedding' needs max_seconds ≥ "
                    f"{MIN_SAMPLES / SAMPLE_RATE:.3f}"
                )
            if self.window_step < 1:
                raise ValueError("window_step must be ≥ 1")
        return self


@MODALITIES.register("audio")
class AudioModality(Modality):
    Options = AudioOptions
    contract = (
        "log_mel: float32 (n_mels, frames), natural-log mel power of a mono waveform at "
        "sample_rate Hz; waveform: float32 (max_seconds*sample_rate,) in [-1, 1]; "
        "speech_embedding: float32 (windows, 96), pretrained speech embeddings"
    )
    file_suffixes = (".wav", ".flac", ".ogg", ".aiff", ".aif")
    options: AudioOptions

    def load(self, raw: Any, *, source: str | None = None) -> torch.Tensor:
        return self.features(self.waveform(raw, source=source))

    def waveform(self, raw: Any, *, source: str | None = None) -> np.ndarray:
        """Mono float32 waveform at the declared sample rate."""
        rate = self.options.sample_rate
        if isinstance(raw, EncodedFile):
            source = source or raw.name
            wave, rate = self._read_file(raw.open(), source)
        elif self.is_path(raw):
            source = source or str(raw)
            wave, rate = self._read_file(Path(raw), source)
        elif isinstance(raw, dict):
            if "waveform" not in raw or "sample_rate" not in raw:
                missing = sorted({"waveform", "sample_rate"} - set(raw))
                raise DataError(f"audio dict lacks {missing}", path=source)
            wave, rate = numeric_array(raw["waveform"], source, "a waveform"), raw["sample_rate"]
            if isinstance(rate, bool) or not isinstance(rate, int | np.integer) or rate <= 0:
                raise DataError(
                    f"sample_rate must be a whole number of Hz above 0, not {rate!r}", path=source
                )
            rate = int(rate)
        elif isinstance(raw, np.ndarray | torch.Tensor | list):
            wave = numeric_array(raw, source, "a waveform")
        else:
            raise DataError(
                f"audio must be a file path, an array or a dict, got {type(raw).__name__}",
                path=source,
            )
        if wave.ndim == 2:
            # (samples, channels) as soundfile returns, or (channels, samples)
            wave = wave.mean(axis=1) if wave.shape[0] > wave.shape[1] else wave.mean(axis=0)
        if wave.ndim != 1:
            raise DataError(
                f"a waveform must be 1-D (or 2-D with channels), got shape {tuple(wave.shape)}",
                path=source,
            )
        wave = wave.astype(np.float32)
        check_finite(wave, source)
        peak = float(np.abs(wave).max())
        if peak > MAX_AMPLITUDE:  # finite, but its power overflows float32 in the features
            raise DataError(
                f"waveform values reach {peak:.3g}; expected samples in about [-1, 1] "
                f"(or integer PCM, at most {MAX_AMPLITUDE:.0e})",
                path=source,
            )
        if rate != self.options.sample_rate:
            from scipy.signal import resample_poly  # imported when needed: 0.8 s

            g = gcd(rate, self.options.sample_rate)
            wave = resample_poly(wave, self.options.sample_rate // g, rate // g).astype(np.float32)
        return wave

    def features(self, wave: np.ndarray) -> torch.Tensor:
        if self.options.representation == "waveform":
            n = int(round(self.options.max_seconds * self.options.sample_rate))
            return torch.from_numpy(_centre_fit(wave, n))
        if self.options.representation == "speech_embedding":
            return self.speech_embedding(wave)
        return self.log_mel(torch.from_numpy(np.ascontiguousarray(wave)))

    def speech_embedding(self, wave: np.ndarray) -> torch.Tensor:
        """(samples,) → (windows, 96) through the frozen pretrained speech embedding; read from
        the feature cache when one is set (`use_feature_cache`)."""
        o = self.options
        fitted = _centre_fit(wave, int(round(o.max_seconds * o.sample_rate)))
        if self._feature_cache is None:
            return torch.from_numpy(self._speech_embedding(fitted))
        return torch.from_numpy(self._feature_cache.get_or_compute(fitted, self._speech_embedding))

    def _speech_embedding(self, fitted: np.ndarray) -> np.ndarray:
        model = shared_model(self.options.speech_model, self.options.window_step)
        with torch.no_grad():
            return model(torch.from_numpy(fitted)[None])[0].float().numpy()

    _feature_cache: FeatureCache | None = None

    def use_feature_cache(self, root: str | None) -> None:
        if root is None or self.options.representation != "speech_embedding":
            self._feature_cache = None
            return
        folder = resolve_model_path(self.options.speech_model, required=MEL_FILE)
        model = hashlib.sha256()
        for name in (MEL_FILE, EMBEDDING_FILE):
            model.update((Path(folder) / name).read_bytes())
        key = {"window_step": self.options.window_step, "model": model.hexdigest()}
        self._feature_cache = FeatureCache(root, "speech_embedding", key)

    def log_mel(self, wave: torch.Tensor) -> torch.Tensor:
        """(samples,) → (n_mels, frames); the waveform is centred so the clip sits mid-frame."""
        o = self.options
        n = (o.frames - 1) * o.hop_length + o.n_fft
        wave = torch.from_numpy(_centre_fit(wave.numpy(), n))
        spec = torch.stft(
            wave,
            n_fft=o.n_fft,
            hop_length=o.hop_length,
            window=self._window,
            center=False,
            return_complex=True,
        )
        power = spec.abs().pow(2)  # (n_fft//2+1, frames)
        mel = self._mel_filters.T @ power  # (n_mels, frames)
        return torch.log(mel + 1e-6).to(torch.float32)

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        """Speaker- and channel-robustness perturbations on a log-mel batch (B, n_mels, T).

        Tempo (time stretch 0.8–1.25), vocal-tract-length-like warp of the mel axis (±8%),
        gain (±6 dB), additive noise at 5–40 dB SNR, one frequency and one time mask
        (SpecAugment, Park et al. 2019). Raw-waveform batches are only gain- and noise-perturbed.
        """
        b = batch.shape[0]
        if self.options.representation == "speech_embedding":
            # fixed pretrained features: small Gaussian noise (5% of each vector's scale)
            return batch + 0.05 * batch.std(dim=-1, keepdim=True) * torch.randn_like(batch)
        if self.options.representation == "waveform":
            gain = 10 ** ((torch.rand(b, 1) * 12 - 6) / 20)
            noise = (
                torch.randn_like(batch)
                * batch.std(dim=1, keepdim=True)
                * 10 ** (-(5 + 35 * torch.rand(b, 1)) / 20)
            )
            return batch * gain + noise
        m, t = batch.shape[1], batch.shape[2]
        power = batch.exp()
        # time stretch and mel warp as one resampling grid; edges are filled with silence
        stretch = torch.exp((torch.rand(b) * 2 - 1) * 0.22)
        warp = 1 + (torch.rand(b) * 2 - 1) * 0.08
        ys = torch.linspace(-1, 1, m)[None, :, None] * warp[:, None, None]
        xs = torch.linspace(-1, 1, t)[None, None, :] * stretch[:, None, None]
        grid = torch.stack(torch.broadcast_tensors(xs, ys), dim=-1)  # (B, M, T, 2)
        floor = float(np.log(1e-6))
        power = (
            F.grid_sample((batch - floor)[:, None], grid, align_corners=True, padding_mode="zeros")[
                :, 0
            ]
            .add(floor)
            .exp()
        )
        power = power * 10 ** ((torch.rand(b, 1, 1) * 12 - 6) / 10)
        snr = 10 ** ((5 + 35 * torch.rand(b, 1, 1)) / 10)
        power = power + power.mean(dim=(1, 2), keepdim=True) / snr * torch.rand(b, m, 1)
        out = torch.log(power + 1e-6)
        fill = out.mean(dim=(1, 2), keepdim=True)
        f0 = torch.randint(0, m, (b, 1, 1))
        fw = torch.randint(0, max(2, m // 8), (b, 1, 1))
        t0 = torch.randint(0, t, (b, 1, 1))
        tw = torch.randint(0, max(2, t // 8), (b, 1, 1))
        fi = torch.arange(m)[None, :, None]
        ti = torch.arange(t)[None, None, :]
        masked = ((fi >= f0) & (fi < f0 + fw)) | ((ti >= t0) & (ti < t0 + tw))
        return torch.where(masked, fill, out)

    def placeholder(self) -> torch.Tensor:
        o = self.options
        if o.representation == "speech_embedding":
            samples = int(round(o.max_seconds * o.sample_rate))
            return torch.zeros(window_count(samples, o.window_step), EMBED_DIM)
        if o.representation == "waveform":
            return torch.zeros(int(round(o.max_seconds * o.sample_rate)))
        return torch.full((o.n_mels, o.frames), float(np.log(1e-6)))

    @cached_property
    def _window(self) -> torch.Tensor:
        return torch.hann_window(self.options.n_fft)

    @cached_property
    def _mel_filters(self) -> torch.Tensor:
        from transformers.audio_utils import mel_filter_bank  # imported when needed: 0.5 s

        o = self.options
        bank = mel_filter_bank(
            num_frequency_bins=o.n_fft // 2 + 1,
            num_mel_filters=o.n_mels,
            min_frequency=o.f_min,
            max_frequency=o.f_max or o.sample_rate / 2,
            sampling_rate=o.sample_rate,
            norm="slaney",
            mel_scale="slaney",
        )
        return torch.from_numpy(bank.astype(np.float32))  # (freq, n_mels)

    def _read_file(self, path: Path | BinaryIO, source: str) -> tuple[np.ndarray, int]:
        if isinstance(path, Path) and not path.is_file():
            raise DataError("audio file not found", path=source)
        try:
            file = str(path) if isinstance(path, Path) else path
            wave, rate = soundfile.read(file, dtype="float32", always_2d=True)
        except (soundfile.LibsndfileError, RuntimeError, OSError, ValueError) as exc:
            raise DataError(f"cannot read audio: {exc}", path=source) from exc
        if wave.shape[0] == 0:
            raise DataError("the audio file holds no samples", path=source)
        return wave.mean(axis=1), int(rate)


def _centre_fit(wave: np.ndarray, n: int) -> np.ndarray:
    """Zero-pad symmetrically or centre-crop to exactly n samples."""
    if len(wave) >= n:
        start = (len(wave) - n) // 2
        return np.ascontiguousarray(wave[start : start + n], dtype=np.float32)
    out = np.zeros(n, dtype=np.float32)
    start = (n - len(wave)) // 2
    out[start : start + len(wave)] = wave
    return out
