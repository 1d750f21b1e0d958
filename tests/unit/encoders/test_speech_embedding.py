"""The torch port of Google's speech embedding, against onnxruntime running the original ONNX
graphs; the audio modality's `speech_embedding` representation; the window_pool encoder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from anybind.adapt.norm_layers import norm_modules
from anybind.config.load import load_config
from anybind.encoders import build_encoder, encoder_options
from anybind.encoders.speech_embedding import SpeechEmbedding
from anybind.encoders.window_pool import WindowPool, WindowPoolOptions
from anybind.errors import ConfigError, DataError
from anybind.modalities import build_modality
from anybind.modalities.audio import AudioModality, AudioOptions
from anybind.modalities.speech_model import (
    EMBEDDING_FILE,
    MEL_FILE,
    SpeechEmbeddingModel,
    read_onnx_weights,
    shared_model,
)
from anybind.model_paths import resolve_model_path
from anybind.tuners.bottleneck import default_adapter_targets

PACKAGE = "package:openwakeword/resources/models"
SPEECH = AudioOptions(sample_rate=16000, representation="speech_embedding", max_seconds=1.0)


@pytest.fixture(scope="module")
def folder() -> Path:
    return Path(resolve_model_path(PACKAGE, required=MEL_FILE))


@pytest.fixture(scope="module")
def model() -> SpeechEmbeddingModel:
    return shared_model(PACKAGE)


def _speech_like(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """A vowel-like harmonic tone with a syllable envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(16000 * seconds)) / 16000
    f0 = 120 + 30 * np.sin(2 * np.pi * 2 * t)
    phase = 2 * np.pi * np.cumsum(f0) / 16000
    wave = sum(np.sin(k * phase) / k for k in range(1, 12))
    envelope = np.exp(-(((t - seconds / 2) / (seconds / 5)) ** 2))
    return (0.3 * wave * envelope + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def test_front_end_matches_onnxruntime(folder: Path, model: SpeechEmbeddingModel) -> None:
    session = ort.InferenceSession(str(folder / MEL_FILE))
    x = _speech_like() * 32767
    x[:3000] = x[-3000:] = 0.0  # digital silence at both ends
    reference = np.squeeze(session.run(None, {"input": x[None]})[0])  # (frames, 32)
    with torch.no_grad():
        ours = model.log_mel(torch.from_numpy(x)[None])[0].numpy()
    assert ours.shape == reference.shape == (97, 32)
    np.testing.assert_allclose(ours, reference, atol=1e-3)
    # the clamp at (maximum - 80 dB) is active: silence at the edges sits exactly on it
    assert ours.min() == pytest.approx(ours.max() - 80.0, abs=1e-3)


def test_embedding_network_matches_onnxruntime(folder: Path, model: SpeechEmbeddingModel) -> None:
    session = ort.InferenceSession(str(folder / EMBEDDING_FILE))
    rng = np.random.default_rng(1)
    windows = (rng.standard_normal((5, 76, 32)) + 2).astype(np.float32)
    reference = session.run(None, {"input_1": windows[..., None]})[0].reshape(5, 96)
    with torch.no_grad():
        ours = model.window_embeddings(torch.from_numpy(windows)).numpy()
    scale = np.abs(reference).max()
    assert scale > 1.0  # a non-trivial output
    np.testing.assert_allclose(ours, reference, atol=1e-4 * scale)


def test_whole_pipeline_matches_onnxruntime(folder: Path) -> None:
    """Waveform → windows: the port equals the two ONNX graphs chained as openwakeword chains
    them (x/10 + 2, windows of 76 frames every 8), with peak scaling and dither switched off."""
    mel = ort.InferenceSession(str(folder / MEL_FILE))
    emb = ort.InferenceSession(str(folder / EMBEDDING_FILE))
    wave = _speech_like(seed=2)
    spec = np.squeeze(mel.run(None, {"input": wave[None] * 32767})[0]) / 10 + 2
    windows = np.stack([spec[i : i + 76] for i in range(0, spec.shape[0] - 75, 8)])
    reference = emb.run(None, {"input_1": windows[..., None].astype(np.float32)})[0]
    plain = SpeechEmbeddingModel(folder, peak=0.0, dither=0.0).eval()
    with torch.no_grad():
        ours = plain(torch.from_numpy(wave)[None])[0].numpy()
    assert ours.shape == (3, 96)
    np.testing.assert_allclose(ours, reference.reshape(3, 96), atol=1e-4 * np.abs(reference).max())


def test_peak_normalisation_makes_it_gain_invariant(model: SpeechEmbeddingModel) -> None:
    wave = torch.from_numpy(_speech_like(seed=3))[None]
    with torch.no_grad():
        loud, quiet = model(wave), model(0.05 * wave)
    torch.testing.assert_close(loud, quiet, atol=1e-3, rtol=1e-3)


def test_encoder_pools_mean_and_max(model: SpeechEmbeddingModel) -> None:
    audio = build_modality("audio", AudioOptions(sample_rate=16000, representation="waveform"))
    encoder = build_encoder(encoder_options({"type": "speech_embedding"}), audio).eval()
    waves = torch.stack([torch.from_numpy(_speech_like(seed=s)) for s in (4, 5)])
    with torch.no_grad():
        out = encoder(waves)
        windows = model(waves)
    assert out.shape == (2, 192)
    torch.testing.assert_close(out[:, :96], windows.mean(dim=1))
    torch.testing.assert_close(out[:, 96:], windows.amax(dim=1))
    # its convolutions are what lora targets; the STFT and mel matrix are buffers, not weights
    assert not any("stft" in n or "mel" in n for n, _ in encoder.named_parameters())


def test_encoder_rejects_wrong_preprocessing() -> None:
    options = encoder_options({"type": "speech_embedding"})
    assert "representation = 'waveform'" in str(SpeechEmbedding.check(options, AudioOptions()))
    slow = AudioOptions(sample_rate=8000, representation="waveform")
    assert "16000" in str(SpeechEmbedding.check(options, slow))
    short = AudioOptions(sample_rate=16000, representation="waveform", max_seconds=0.5)
    assert "max_seconds" in str(SpeechEmbedding.check(options, short))
    good = AudioOptions(sample_rate=16000, representation="waveform")
    assert SpeechEmbedding.check(options, good) is None


def test_missing_or_corrupt_model_files_name_the_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"no {MEL_FILE}"):
        SpeechEmbeddingModel(tmp_path)
    (tmp_path / MEL_FILE).write_bytes(b"not a protobuf \x00\xff" * 10)
    with pytest.raises(ConfigError, match="cannot read ONNX weights"):
        read_onnx_weights(tmp_path / MEL_FILE)
    with pytest.raises(ConfigError, match="needs the Python package 'no_such_pkg'"):
        resolve_model_path("package:no_such_pkg/models", required=MEL_FILE)


def test_modality_representation(model: SpeechEmbeddingModel) -> None:
    audio = AudioModality(SPEECH)
    wave8k = _speech_like(0.6, seed=6)[::2].copy()  # an 8 kHz clip, resampled on load
    features = audio.load({"waveform": wave8k, "sample_rate": 8000})
    assert features.shape == audio.placeholder().shape == (3, 96)
    resampled = audio.waveform({"waveform": wave8k, "sample_rate": 8000})
    n = resampled.shape[0]
    assert n == 9600
    # the clip is centred in one second of silence before the network sees it
    centred, left = np.zeros(16000, np.float32), np.zeros(16000, np.float32)
    centred[(16000 - n) // 2 : (16000 - n) // 2 + n] = resampled
    left[:n] = resampled
    with torch.no_grad():
        expected = model(torch.from_numpy(centred)[None])[0]
        aligned_left = model(torch.from_numpy(left)[None])[0]
    torch.testing.assert_close(features, expected)
    assert not torch.allclose(features, aligned_left, atol=1e-2)  # the placement matters
    with pytest.raises(DataError):
        audio.load(np.full(100, np.nan, np.float32))


def test_modality_options_are_checked() -> None:
    with pytest.raises(ValueError, match="sample_rate 16000"):
        AudioOptions(representation="speech_embedding", sample_rate=8000)
    with pytest.raises(ValueError, match="max_seconds"):
        AudioOptions(representation="speech_embedding", sample_rate=16000, max_seconds=0.5)


def test_window_pool_encoder() -> None:
    audio = AudioModality(SPEECH)
    torch.manual_seed(0)
    layer = WindowPool(WindowPoolOptions(hidden=16, norm="layer"), audio).eval()
    x = torch.randn(4, 3, 96)
    out = layer(x)
    assert out.shape == (4, 32)
    h = layer.per_window(x)
    torch.testing.assert_close(out, torch.cat([h.mean(1), h.amax(1)], dim=1))
    # windows are a set: their order does not matter
    torch.testing.assert_close(layer(x.flip(1)), out)
    with pytest.raises(ValueError, match="takes"):
        layer(torch.randn(4, 96))
    batch = WindowPool(WindowPoolOptions(hidden=16, norm="batch"), audio)
    assert len(norm_modules(batch)) == 1 and len(norm_modules(layer)) == 1
    assert default_adapter_targets(layer) == ["per_window"]
    problem = WindowPool.check(WindowPoolOptions(), AudioOptions())
    assert problem is not None and "speech_embedding" in problem
    assert WindowPool.check(WindowPoolOptions(), SPEECH) is None


def test_batch_norm_counts_every_window() -> None:
    audio = AudioModality(SPEECH)
    encoder = WindowPool(WindowPoolOptions(hidden=8, norm="batch"), audio).train()
    x = torch.randn(5, 3, 96) * 4 + 2
    normed = encoder.per_window[0](x)
    flat = normed.reshape(-1, 96)
    torch.testing.assert_close(flat.mean(0), torch.zeros(96), atol=1e-5, rtol=0)
    torch.testing.assert_close(flat.var(0, unbiased=False), torch.ones(96), atol=1e-3, rtol=0)


def test_digits_config_uses_the_speech_embedding() -> None:
    from anybind.recipes.demo import digits_config_path

    config = load_config(digits_config_path())
    audio = config.modalities["audio"]
    assert audio.encoder["type"] == "window_pool"
    assert audio.modality_options("audio").representation == "speech_embedding"
