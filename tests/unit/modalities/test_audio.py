"""The audio modality: file / array / dict → mono waveform at `sample_rate` → log-mel.

References: the FFT peak of a resampled sine, the channel mean, transformers' own
`spectrogram` + `mel_filter_bank` in float64, and a hand-placed click whose frames and power are
computed here from the window.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers.audio_utils import mel_filter_bank, spectrogram, window_function

from anybind.errors import DataError
from anybind.modalities import build_modality

FLOOR = float(np.log(1e-6))


def _sine(freq: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(rate * seconds))) / rate
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _reference_log_mel(
    wave: np.ndarray,
    sample_rate: int,
    n_fft: int,
    hop: int,
    n_mels: int,
    f_min: float,
    f_max: float,
) -> np.ndarray:
    window = window_function(n_fft, "hann", periodic=True)  # == torch.hann_window (periodic)
    filters = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=f_min,
        max_frequency=f_max,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    mel = spectrogram(
        wave.astype(np.float64),
        window,
        frame_length=n_fft,
        hop_length=hop,
        power=2.0,
        center=False,
        mel_filters=filters,
        mel_floor=1e-300,
        dtype=np.float64,
    )
    return np.log(mel + 1e-6)


def test_wav_file_is_resampled_16k_to_8k_keeping_a_1khz_sine(tmp_path: Path) -> None:
    path = tmp_path / "sine.wav"
    soundfile.write(path, _sine(1000, 16000, 1.0), 16000, subtype="FLOAT")
    audio = build_modality("audio", {"sample_rate": 8000})
    wave = audio.waveform(str(path))
    assert wave.dtype == np.float32
    assert wave.shape == (8000,)  # one second at 8 kHz: the length halves
    spectrum = np.abs(np.fft.rfft(wave.astype(np.float64) * np.hanning(len(wave))))
    freqs = np.fft.rfftfreq(len(wave), d=1 / 8000)
    bin_width = freqs[1]
    assert abs(freqs[int(np.argmax(spectrum))] - 1000) <= bin_width
    # the amplitude survives the polyphase filter (1 kHz is far below the 4 kHz Nyquist)
    assert abs(np.sqrt(2) * wave[1000:7000].std() - 0.5) < 0.01


def test_resampling_removes_content_above_the_new_nyquist() -> None:
    # 6 kHz at 16 kHz → above 4 kHz: the anti-alias filter must suppress it, not fold it to 2 kHz
    audio = build_modality("audio", {"sample_rate": 8000})
    wave = audio.waveform({"waveform": _sine(6000, 16000, 1.0), "sample_rate": 16000})
    assert wave.shape == (8000,)
    assert wave[500:7500].std() < 0.01 * 0.5


def test_dict_input_equals_the_same_audio_from_a_file(tmp_path: Path) -> None:
    sine = _sine(1000, 16000, 0.5)
    path = tmp_path / "s.wav"
    soundfile.write(path, sine, 16000, subtype="FLOAT")
    audio = build_modality("audio", {"sample_rate": 8000})
    from_dict = audio.load({"waveform": sine, "sample_rate": 16000})
    from_file = audio.load(str(path))
    torch.testing.assert_close(from_dict, from_file, rtol=0, atol=0)
    # a dict at the declared rate is taken as is
    raw = _sine(500, 8000, 0.25)
    np.testing.assert_array_equal(audio.waveform({"waveform": raw, "sample_rate": 8000}), raw)


def test_dict_without_sample_rate_raises_data_error() -> None:
    with pytest.raises(DataError, match="sample_rate") as exc:
        build_modality("audio").load({"waveform": np.zeros(100)}, source="clips.jsonl")
    assert exc.value.path == "clips.jsonl"


def test_stereo_file_becomes_the_mean_of_its_channels(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    stereo = rng.uniform(-0.5, 0.5, size=(4000, 2)).astype(np.float32)
    path = tmp_path / "stereo.wav"
    soundfile.write(path, stereo, 8000, subtype="FLOAT")
    wave = build_modality("audio", {"sample_rate": 8000}).waveform(str(path))
    np.testing.assert_allclose(wave, stereo.astype(np.float64).mean(axis=1), rtol=0, atol=1e-7)


@pytest.mark.parametrize("layout", ["samples_channels", "channels_samples"])
def test_stereo_array_becomes_the_mean_of_its_channels(layout: str) -> None:
    rng = np.random.default_rng(1)
    stereo = rng.uniform(-0.5, 0.5, size=(3000, 2)).astype(np.float32)
    raw = stereo if layout == "samples_channels" else np.ascontiguousarray(stereo.T)
    wave = build_modality("audio").waveform(raw)
    np.testing.assert_allclose(wave, stereo.astype(np.float64).mean(axis=1), rtol=0, atol=1e-7)


def test_log_mel_equals_the_transformers_reference() -> None:
    opts = {"sample_rate": 8000, "n_mels": 40, "n_fft": 256, "hop_length": 128, "frames": 64}
    audio = build_modality("audio", opts)
    n = (64 - 1) * 128 + 256  # exactly the samples the frames cover: no padding, no crop
    rng = np.random.default_rng(2)
    t = np.arange(n) / 8000
    wave = (
        0.3 * np.sin(2 * np.pi * 440 * t)
        + 0.2 * np.sin(2 * np.pi * 2500 * t)
        + 0.05 * rng.standard_normal(n)
    ).astype(np.float32)
    out = audio.load(wave)
    assert out.dtype == torch.float32 and out.shape == (40, 64)
    ref = _reference_log_mel(wave, 8000, 256, 128, 40, 20.0, 4000.0)
    np.testing.assert_allclose(out.numpy(), ref, rtol=0, atol=1e-4)


def test_log_mel_reference_with_other_options() -> None:
    opts = {
        "sample_rate": 16000,
        "n_mels": 64,
        "n_fft": 512,
        "hop_length": 160,
        "frames": 20,
        "f_min": 50.0,
        "f_max": 7000.0,
    }
    audio = build_modality("audio", opts)
    n = (20 - 1) * 160 + 512
    wave = np.random.default_rng(3).uniform(-0.5, 0.5, n).astype(np.float32)
    ref = _reference_log_mel(wave, 16000, 512, 160, 64, 50.0, 7000.0)
    np.testing.assert_allclose(audio.load(wave).numpy(), ref, rtol=0, atol=1e-4)


def test_log_mel_of_silence_is_the_floor() -> None:
    out = build_modality("audio").load(np.zeros(2000, np.float32))
    np.testing.assert_allclose(out.numpy(), FLOOR, rtol=0, atol=1e-6)
    torch.testing.assert_close(build_modality("audio").placeholder(), out)


def _click_frames(
    audio_opts: dict, clip_len: int, click_at: int, amp: float = 0.8
) -> tuple[torch.Tensor, dict[int, float]]:
    """Load a clip with one impulse; return the log-mel and, per frame that sees the click, the
    expected power per frequency bin (amp · window[position])²."""
    audio = build_modality("audio", audio_opts)
    o = audio.options
    clip = np.zeros(clip_len, np.float32)
    clip[click_at] = amp
    n = (o.frames - 1) * o.hop_length + o.n_fft
    position = click_at + (n - clip_len) // 2  # centred in the analysed span (zero-padded)
    window = torch.hann_window(o.n_fft, dtype=torch.float64).numpy()
    expected = {}
    for f in range(o.frames):
        offset = position - f * o.hop_length
        if 0 <= offset < o.n_fft:
            expected[f] = (amp * window[offset]) ** 2
    return audio.load(clip), expected


def test_a_short_click_in_the_middle_lands_in_the_middle_frames() -> None:
    opts = {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "frames": 64, "n_mels": 40}
    out, expected = _click_frames(opts, clip_len=801, click_at=400)
    # analysed span 63*128+256 = 8320 samples; the clip starts at (8320 - 801) // 2 = 3759, so
    # the click sits at 4159 → frames 31 (3968..4223) and 32 (4096..4351)
    assert sorted(expected) == [31, 32]
    energy = (out - FLOOR).sum(dim=0)
    assert set(torch.nonzero(energy > 1e-3).flatten().tolist()) == {31, 32}
    # an impulse has a flat power spectrum: mel = sum of each filter × (amp·w[pos])²
    filters = mel_filter_bank(
        num_frequency_bins=129,
        num_mel_filters=40,
        min_frequency=20,
        max_frequency=4000,
        sampling_rate=8000,
        norm="slaney",
        mel_scale="slaney",
    )
    for f, power in expected.items():
        ref = np.log(filters.sum(axis=0) * power + 1e-6)
        np.testing.assert_allclose(out[:, f].numpy(), ref, rtol=0, atol=1e-4)


def test_click_at_the_start_of_a_short_clip_is_placed_by_centring() -> None:
    opts = {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "frames": 64}
    out, expected = _click_frames(opts, clip_len=2000, click_at=0)
    # (8320 - 2000) // 2 = 3160 → covered by frames 23 (2944..3199) and 24 (3072..3327)
    assert sorted(expected) == [23, 24]
    energy = (out - FLOOR).sum(dim=0)
    assert set(torch.nonzero(energy > 1e-3).flatten().tolist()) == {23, 24}


def test_a_long_clip_is_centre_cropped() -> None:
    audio = build_modality(
        "audio", {"sample_rate": 8000, "n_fft": 256, "hop_length": 128, "frames": 64}
    )
    n = 8320
    clip = np.zeros(20000, np.float32)
    clip[10000] = 0.8  # the middle of the clip → 10000 - (20000 - 8320) // 2 = 4160
    clip[100] = 0.8  # cropped away
    out = audio.load(clip)
    energy = (out - FLOOR).sum(dim=0)
    assert set(torch.nonzero(energy > 1e-3).flatten().tolist()) == {31, 32}
    assert 10000 - (20000 - n) // 2 == 4160


def test_waveform_representation_has_max_seconds_times_rate_samples() -> None:
    audio = build_modality(
        "audio", {"sample_rate": 8000, "representation": "waveform", "max_seconds": 0.5}
    )
    short = np.random.default_rng(4).uniform(-1, 1, 1000).astype(np.float32)
    out = audio.load(short)
    assert out.shape == (4000,) and out.dtype == torch.float32
    start = (4000 - 1000) // 2
    np.testing.assert_array_equal(out[start : start + 1000].numpy(), short)
    assert float(out[:start].abs().sum()) == 0.0 and float(out[start + 1000 :].abs().sum()) == 0.0
    long = np.random.default_rng(5).uniform(-1, 1, 9001).astype(np.float32)
    start = (9001 - 4000) // 2
    np.testing.assert_array_equal(audio.load(long).numpy(), long[start : start + 4000])
    assert audio.placeholder().shape == (4000,)


def test_corrupt_wav_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(6).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(DataError, match="cannot read audio") as exc:
        build_modality("audio").load(str(path))
    assert exc.value.path == str(path) and str(path) in str(exc.value)


def test_empty_wav_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.wav"
    soundfile.write(path, np.zeros(0, np.float32), 16000)
    with pytest.raises(DataError, match="no samples") as exc:
        build_modality("audio").load(str(path))
    assert exc.value.path == str(path) and str(path) in str(exc.value)


def test_nan_samples_raise_data_error_naming_the_file(tmp_path: Path) -> None:
    wave = _sine(440, 8000, 0.1)
    wave[17] = np.nan
    path = tmp_path / "nan.wav"
    soundfile.write(path, wave, 8000, subtype="FLOAT")
    with pytest.raises(DataError, match="NaN") as exc:
        build_modality("audio").load(str(path))
    assert exc.value.path == str(path) and str(path) in str(exc.value)
    with pytest.raises(DataError, match="NaN") as exc:
        build_modality("audio").load(wave, source="arrays.npz")
    assert exc.value.path == "arrays.npz"


def test_missing_file_and_bad_inputs_raise_data_error(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.wav")
    with pytest.raises(DataError, match="not found") as exc:
        build_modality("audio").load(path)
    assert exc.value.path == path
    with pytest.raises(DataError):
        build_modality("audio").load(np.zeros((2, 3, 4)), source="x")
    with pytest.raises(DataError):
        build_modality("audio").load(np.zeros(0), source="x")
    with pytest.raises(DataError, match="int"):
        build_modality("audio").load(5, source="x")


def _log_mel_batch() -> torch.Tensor:
    audio = build_modality("audio", {"frames": 32})
    rng = np.random.default_rng(7)
    return torch.stack(
        [audio.load(rng.uniform(-0.5, 0.5, 4000).astype(np.float32)) for _ in range(3)]
    )


def test_log_mel_augment_keeps_shape_stays_finite_and_is_seed_reproducible() -> None:
    audio = build_modality("audio", {"frames": 32})
    batch = _log_mel_batch()
    outs = []
    for seed in (0, 0, 1):
        torch.manual_seed(seed)
        outs.append(audio.augment(batch))
    a, b, c = outs
    assert a.shape == batch.shape == (3, 40, 32)
    assert bool(torch.isfinite(a).all()) and bool(torch.isfinite(c).all())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-2
    assert float((a - batch).abs().max()) > 1e-2
    # the output is still a log power: never below the log floor
    assert float(a.min()) >= FLOOR - 1e-4


def test_augment_of_silence_stays_finite() -> None:
    audio = build_modality("audio", {"frames": 16})
    batch = audio.placeholder()[None].repeat(2, 1, 1)
    torch.manual_seed(0)
    out = audio.augment(batch)
    assert out.shape == batch.shape and bool(torch.isfinite(out).all())


def test_waveform_augment_keeps_shape_and_is_seed_reproducible() -> None:
    audio = build_modality("audio", {"representation": "waveform", "max_seconds": 0.25})
    rng = np.random.default_rng(8)
    batch = torch.stack(
        [audio.load(rng.uniform(-0.5, 0.5, 2000).astype(np.float32)) for _ in range(4)]
    )
    torch.manual_seed(5)
    a = audio.augment(batch)
    torch.manual_seed(5)
    b = audio.augment(batch)
    torch.manual_seed(6)
    c = audio.augment(batch)
    assert a.shape == batch.shape == (4, 2000)
    assert bool(torch.isfinite(a).all())
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-3
    # gain is within ±6 dB and the noise at ≥ 5 dB SNR: the energy ratio is bounded
    ratio = (a.pow(2).mean(1) / batch.pow(2).mean(1)).sqrt()
    assert bool((ratio > 10 ** (-6 / 20) * 0.8).all())
    assert bool((ratio < 10 ** (6 / 20) * 1.3).all())
