"""Spoken digit synthesis with espeak-ng (anybind.data.digits.speech)."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import espeakng_loader
import numpy as np
import pytest

from anybind.data.digits import speech
from anybind.data.digits.speech import (
    DIGIT_WORDS,
    Voice,
    digit_voices,
    list_variants,
    list_voices,
    synthesize,
    synthesize_digits,
)

SR = 8000


def _log_spectrum(x: np.ndarray, n_fft: int = 256) -> np.ndarray:
    """Mean log power spectrum over 50%-overlapping Hann frames, level-normalised."""
    hop = n_fft // 2
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop] * np.hanning(n_fft)
    spec = np.log(np.mean(np.abs(np.fft.rfft(frames, axis=1)) ** 2, axis=0) + 1e-8)
    return spec - spec.mean()


def _voice_spectrum(voice: Voice) -> np.ndarray:
    return _log_spectrum(np.concatenate([synthesize(w, voice) for w in DIGIT_WORDS]))


def test_the_spoken_words_are_the_class_names_in_label_order() -> None:
    """Clip labels index DIGIT_WORDS; zero-shot scores them against the config's class names
    and the images' digit names: the three must agree word for word, in the same order."""
    from importlib.resources import files

    import yaml

    from anybind.data.digits.images import DIGIT_NAMES

    config = yaml.safe_load((files("anybind") / "configs" / "digits.yaml").read_text())
    assert list(DIGIT_WORDS) == list(DIGIT_NAMES) == config["data"]["class_names"]
    assert len(set(DIGIT_WORDS)) == 10


def test_voices_and_variants_exist_as_espeak_files() -> None:
    data = Path(espeakng_loader.get_data_path())
    lang_files = {p.name.lower() for p in (data / "lang").rglob("*") if p.is_file()}
    variant_files = {p.name for p in (data / "voices" / "!v").iterdir()}
    voices = list_voices()
    variants = list_variants()
    for expected in ("en-us", "en", "en-gb-scotland", "en-gb-x-rp", "en-029", "de", "fr", "nl"):
        assert expected in voices
    assert set(voices) <= lang_files
    assert len(set(voices)) == len(voices)
    assert not {"ru", "el", "hi", "es"} & set(voices)  # switch to English / spell "two" out
    for expected in ("m1", "m7", "f1", "f4", "klatt", "croak", "whisper"):
        assert expected in variants
    assert set(variants) <= variant_files
    assert "fast" not in variants


def test_synthesize_waveform_contract() -> None:
    x = synthesize("seven", Voice("en-us", rate=175))
    assert x.dtype == np.float32 and x.ndim == 1
    assert np.all(np.isfinite(x))
    assert np.abs(x).max() <= 1.0
    assert np.abs(x).max() > 0.05  # audible, not near-silence
    assert 0.3 <= len(x) / SR <= 1.2


def test_sample_rate_scales_length() -> None:
    voice = Voice("en-gb-x-rp+m3")
    n8 = len(synthesize("four", voice, sample_rate=8000))
    n16 = len(synthesize("four", voice, sample_rate=16000))
    n22 = len(synthesize("four", voice, sample_rate=22050))  # espeak's native rate
    assert n16 / n8 == pytest.approx(2.0, rel=0.02)
    assert n22 / n8 == pytest.approx(22050 / 8000, rel=0.02)


def test_silence_is_trimmed() -> None:
    frame = SR // 100  # 10 ms
    for word in ("six", "one", "eight"):
        x = synthesize(word, Voice("en-us+f2"))
        energy = np.sqrt(np.mean(x[: len(x) // frame * frame].reshape(-1, frame) ** 2, axis=1))
        loud = np.flatnonzero(energy > 0.01 * energy.max())
        assert loud[0] <= 2 and loud[-1] >= len(energy) - 3, word


def test_same_voice_is_deterministic() -> None:
    # f3 has breath noise (espeak seeds its generator with time()) and pitch flutter (state kept
    # inside espeak between utterances)
    voice = Voice("en-us+f3", rate=150, pitch=60, pitch_range=40)
    first = synthesize("three", voice)
    synthesize("nine", Voice("de+whisper", rate=240))
    synthesize("two", Voice("fr+klatt4"))
    time.sleep(1.01)  # a new time() second
    assert np.array_equal(first, synthesize("three", voice))


def test_threads_give_the_same_clips() -> None:
    jobs = [(w, Voice(v)) for w in ("one", "five") for v in ("en-us+m1", "nl+f1", "en+klatt2")]
    expected = [synthesize(w, v) for w, v in jobs]
    with ThreadPoolExecutor(max_workers=4) as pool:
        got = list(pool.map(lambda job: synthesize(*job), jobs * 2))
    for a, b in zip(expected * 2, got, strict=True):
        assert np.array_equal(a, b)


def test_different_voices_sound_different() -> None:
    reference = Voice("en-us")
    spectra = {
        name: _voice_spectrum(Voice(name))
        for name in ("en-us", "en-us+f3", "en-us+klatt", "en-gb-scotland", "de", "fr+m7")
    }
    # noise floor: the same voice at a slightly different speaking rate
    floor = np.linalg.norm(_voice_spectrum(Voice("en-us", rate=185)) - spectra["en-us"])
    names = list(spectra)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert np.linalg.norm(spectra[a] - spectra[b]) > 2 * floor, (a, b)
    assert not np.array_equal(synthesize("two", reference), synthesize("two", Voice("de")))


def test_higher_rate_gives_shorter_clip() -> None:
    for word in ("seven", "zero"):
        slow = synthesize(word, Voice("en-us", rate=110))
        fast = synthesize(word, Voice("en-us", rate=260))
        assert len(fast) < 0.8 * len(slow), word


def test_pitch_parameter_changes_pitch() -> None:
    low = _log_spectrum(synthesize("nine", Voice("en-us", pitch=20)))
    high = _log_spectrum(synthesize("nine", Voice("en-us", pitch=80)))
    freqs = np.fft.rfftfreq(256, 1 / SR)
    band = (freqs > 60) & (freqs < 400)  # fundamental region

    def centroid(s: np.ndarray) -> float:
        return float(np.sum(freqs[band] * np.exp(s[band])) / np.sum(np.exp(s[band])))

    assert centroid(high) > centroid(low)


def test_digit_voices_are_disjoint_and_deterministic() -> None:
    train, test = digit_voices(200, 60, seed=3)
    assert len(train) == 200 and len(test) == 60
    assert {v.name for v in train}.isdisjoint({v.name for v in test})
    assert digit_voices(200, 60, seed=3) == (train, test)
    assert digit_voices(200, 60, seed=4) != (train, test)
    bases, variants = set(list_voices()), {"", *list_variants()}
    for voices in (train, test):
        assert {v.base for v in voices} <= bases
        assert {v.variant for v in voices} <= variants
        english = sum(v.base.startswith("en") for v in voices)
        assert abs(english - len(voices) / 2) <= 1  # half English, half accented
        assert all(110 <= v.rate <= 260 and 20 <= v.pitch <= 80 for v in voices)
        assert len({v.rate for v in voices}) > 20
    # more voices than one side's combinations: combinations repeat, sides stay disjoint
    big_train, big_test = digit_voices(3000, 400, seed=0)
    assert {v.name for v in big_train}.isdisjoint({v.name for v in big_test})
    assert digit_voices(7, 0)[1] == []
    with pytest.raises(ValueError):
        digit_voices(-1, 2)


def test_voice_validation_and_id() -> None:
    voice = Voice("en-us+f3", rate=150, pitch=40, pitch_range=60)
    assert (voice.base, voice.variant) == ("en-us", "f3")
    assert voice.id == "en-us+f3@r150p40g60"
    assert Voice("de").variant == ""
    with pytest.raises(ValueError):
        Voice("en-us", rate=50)
    with pytest.raises(ValueError):
        Voice("en-us", pitch=101)
    with pytest.raises(ValueError, match="unknown espeak voice"):
        synthesize("one", Voice("xx-nowhere"))
    with pytest.raises(ValueError, match="variant"):
        synthesize("one", Voice("en-us+nosuchvariant"))


def test_no_audio_raises_naming_the_voice() -> None:
    with pytest.raises(RuntimeError, match=r"en\+m2"):
        synthesize(".", Voice("en+m2"))


def test_synthesize_digits_and_cache_round_trip(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    voices = [Voice("en-us+m2", rate=200), Voice("it+f1", pitch=70)]
    waves, labels, voice_index = synthesize_digits(voices, cache_dir=tmp_path, progress=False)
    assert len(waves) == 20
    assert labels.dtype == np.int64 and voice_index.dtype == np.int64
    assert labels.tolist() == list(range(10)) * 2
    assert voice_index.tolist() == [0] * 10 + [1] * 10
    for wave, label, vi in zip(waves, labels, voice_index, strict=True):
        assert np.array_equal(wave, synthesize(DIGIT_WORDS[label], voices[vi]))
    cached = sorted(tmp_path.iterdir())
    assert len(cached) == 1 and cached[0].suffix == ".npz"  # no temp files left behind

    def fail(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(speech, "synthesize", fail)
    again, labels2, voice_index2 = synthesize_digits(voices, cache_dir=tmp_path, progress=False)
    for a, b in zip(again, waves, strict=True):
        assert a.dtype == np.float32 and np.array_equal(a, b)
    assert np.array_equal(labels2, labels) and np.array_equal(voice_index2, voice_index)
    monkeypatch.undo()

    # a different sample rate or voice list is a different cache entry
    synthesize_digits(voices[:1], sample_rate=16000, cache_dir=tmp_path, progress=False)
    assert len(list(tmp_path.glob("*.npz"))) == 2
    # a corrupt cache file is rebuilt
    cached[0].write_bytes(b"not an npz file")
    rebuilt, _, _ = synthesize_digits(voices, cache_dir=tmp_path, progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt, waves, strict=True))
