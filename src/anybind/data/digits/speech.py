"""Offline synthesis of spoken digit words ("zero" … "nine") with espeak-ng.

(Kept as one file on purpose: the ctypes binding, the voice lists and the synthesis cache share
the library handle and its one-thread-at-a-time state; split, each part would reach into the
others' private state.)

The espeak-ng shared library and its data come from the `espeakng-loader` wheel and are driven
through ctypes (the C API of ``speak_lib.h``) in ``AUDIO_OUTPUT_SYNCHRONOUS`` mode: a synth
callback collects the 16-bit mono samples (22050 Hz, as returned by ``espeak_Initialize``) into a
Python buffer; they are trimmed of leading/trailing silence and resampled to the requested rate.

Voices are espeak voice names, optionally with a variant: ``"en-us"``, ``"en-gb-scotland+f3"``,
``"de+klatt"``. `list_voices` gives the base voices (English dialects plus other-language voices
that read English digit words with an accent), `list_variants` the voice variants;
`digit_voices` draws random train/test voices whose base+variant combinations are disjoint.

Determinism: espeak-ng keeps synthesis state (pitch-flutter phase, roughness cycle counters) in
C function-static variables that neither ``espeak_Terminate`` nor ``espeak_Initialize`` reset, and
``espeak_Initialize`` seeds its noise generator (breath noise) from the clock; so the same word
and voice give slightly different samples from call to call. To make every clip a pure function
of (word, voice), the engine loads a private in-memory copy of the library (``memfd_create``, so
nothing is written to disk and other users of the wheel's library are unaffected), reloads it
(``dlclose`` + ``dlopen`` + ``espeak_Initialize``, well under a millisecond) before each clip and
seeds the noise generator from the word and voice. Where ``dlclose`` is unavailable it keeps one
long-lived instance: still correct speech, but not bit-reproducible. About 1.4 ms per clip in all
(10 digits x 300 voices in ~4 s on one core).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from fractions import Fraction
from functools import cache, lru_cache
from pathlib import Path

import numpy as np

__all__ = [
    "DIGIT_WORDS",
    "ENGLISH_VOICES",
    "ACCENT_VOICES",
    "VOICE_VARIANTS",
    "Voice",
    "list_voices",
    "list_variants",
    "digit_voices",
    "synthesize",
    "synthesize_digits",
]

DIGIT_WORDS: tuple[str, ...] = (
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
)

# English dialect voices of espeak-ng 1.52 (file names under espeak-ng-data/lang/gmw, lower-cased;
# espeak matches voice names case-insensitively). "en-shaw" is left out: for Latin-script text it
# is identical to "en".
ENGLISH_VOICES: tuple[str, ...] = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)

# Other-language voices that, given the English text, still say ten distinct, recognisable digit
# words with a foreign accent. Chosen by comparing espeak_TextToPhonemes output for each language
# with en-us: all ten words distinct, no letter-by-letter spelling (Spanish reads the "w" of "two"
# as "uve doble", Macedonian/Uzbek likewise), and not a silent switch to the English voice for
# every word (which is what non-Latin-script languages such as ru, el, hi, cmn do).
ACCENT_VOICES: tuple[str, ...] = (
    "de",
    "fr",
    "nl",
    "it",
    "sv",
    "nb",
    "da",
    "pl",
    "cs",
    "hr",
    "pt",
    "pt-br",
    "ca",
    "ro",
    "fi",
    "hu",
    "af",
    "id",
    "sw",
    "tr",
)

# Voice variants (files in espeak-ng-data/voices/!v) that keep the words intelligible. Left out:
# effects that bury the speech (echo-heavy "RicishayMax*", "robosoft*", "UniRobot", "anikaRobot",
# "announcer", "Demonic", "Tweaky", "Mr serious"), the experimental "fast", and "caleb" (voicing
# 0, i.e. only breath noise).
VOICE_VARIANTS: tuple[str, ...] = (
    *(f"m{i}" for i in range(1, 9)),
    *(f"f{i}" for i in range(1, 6)),
    "klatt",
    "klatt2",
    "klatt3",
    "klatt4",
    "klatt5",
    "klatt6",
    "croak",
    "whisper",
    "whisperf",
    "Alex",
    "Alicia",
    "Andrea",
    "Andy",
    "Annie",
    "Denis",
    "Diogo",
    "Gene",
    "Henrique",
    "Hugo",
    "Jacky",
    "Lee",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "Storm",
    "adam",
    "anika",
    "antonio",
    "aunty",
    "belinda",
    "benjamin",
    "boris",
    "david",
    "ed",
    "edward",
    "grandma",
    "grandpa",
    "gustave",
    "iven",
    "john",
    "kaukovalta",
    "linda",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "paul",
    "pedro",
    "quincy",
    "rob",
    "robert",
    "sandro",
    "shelby",
    "steph",
    "travis",
    "victor",
    "zac",
)

RATE_RANGE: tuple[int, int] = (110, 260)  # words per minute (espeak allows 80..450)
PITCH_RANGE: tuple[int, int] = (20, 80)  # espeak base pitch 0..100, 50 = voice default
INTONATION_RANGE: tuple[int, int] = (20, 80)  # espeak pitch range 0..100, 50 = voice default

# --- speak_lib.h constants -------------------------------------------------------------------
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_ESPEAK_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_ESPEAK_RANGE = 4
_EE_OK = 0
# LoadVoice keeps "<voice file>+<variant>" in a static char[40] (strcat, no bounds check): longer
# names abort the process (glibc's fortify check), so they are refused or avoided.
_MAX_VOICE_ID = 39

# int SynthCallback(short *wav, int numsamples, espeak_EVENT *events)
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)

# espeak volume (0..200, default 100). At 100 several variants (antonio, iven, Jacky, ed, paul, ...)
# saturate espeak's int16 output; at 50 clipping is gone but for a few samples of the loudest ones.
_VOLUME = 50
_CACHE_FORMAT = 1
_TRIM_FRAME_S = 0.010  # energy frames of 10 ms
_TRIM_REL_DB = -40.0  # frames quieter than the loudest frame by more than this are silence
_TRIM_ABS_FLOOR = 1e-4  # ... and so is anything below -80 dBFS


@dataclass(frozen=True)
class Voice:
    """One synthetic speaker: an espeak voice (``base`` or ``base+variant``) and prosody.

    rate: words per minute (80..450, espeak default 175); pitch: base pitch (0..100, 50 keeps
    the voice's own pitch); pitch_range: intonation range (0..100, 0 = monotone, 50 = normal).
    """

    name: str
    rate: int = 175
    pitch: int = 50
    pitch_range: int = 50

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name) or self.name.count("+") > 1:
            raise ValueError(f"invalid espeak voice name {self.name!r}")
        if not 80 <= self.rate <= 450:
            raise ValueError(f"voice {self.name!r}: rate {self.rate} outside 80..450 wpm")
        if not 0 <= self.pitch <= 100:
            raise ValueError(f"voice {self.name!r}: pitch {self.pitch} outside 0..100")
        if not 0 <= self.pitch_range <= 100:
            raise ValueError(f"voice {self.name!r}: pitch_range {self.pitch_range} outside 0..100")

    @property
    def base(self) -> str:
        """The espeak base voice, e.g. ``"en-us"`` for ``"en-us+f3"``."""
        return self.name.partition("+")[0]

    @property
    def variant(self) -> str:
        """The voice variant, e.g. ``"f3"`` for ``"en-us+f3"``; ``""`` when there is none."""
        return self.name.partition("+")[2]

    @property
    def id(self) -> str:
        """A short unique string, e.g. ``"en-us+f3@r175p50g50"``."""
        return f"{self.name}@r{self.rate}p{self.pitch}g{self.pitch_range}"


# --- espeak data discovery ---------------------------------------------------------------------


def _data_dir() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


@lru_cache(maxsize=1)
def _lang_files() -> dict[str, Path]:
    """Lower-cased voice file name -> path, for every file under espeak-ng-data/lang."""
    root = _data_dir() / "lang"
    return {p.name.lower(): p for p in sorted(root.rglob("*")) if p.is_file()}


@cache
def _voice_identifier(base: str) -> str:
    """espeak's identifier of a base voice: its path under espeak-ng-data/lang, e.g. gmw/en-US."""
    return _lang_files()[base].relative_to(_data_dir() / "lang").as_posix()


@lru_cache(maxsize=1)
def _variant_files() -> frozenset[str]:
    return frozenset(p.name for p in (_data_dir() / "voices" / "!v").iterdir() if p.is_file())


def list_voices() -> list[str]:
    """espeak base voices that speak English digit words, English dialects first.

    Only voices whose file exists in the installed espeak-ng-data/lang are returned. Each can be
    combined with any of `list_variants` as ``f"{voice}+{variant}"``.
    """
    present = _lang_files()
    return [v for v in (*ENGLISH_VOICES, *ACCENT_VOICES) if v in present]


def list_variants() -> list[str]:
    """espeak voice variants (files in espeak-ng-data/voices/!v) used for digit voices."""
    present = _variant_files()
    return [v for v in VOICE_VARIANTS if v in present]


def digit_voices(n_train: int, n_test: int, seed: int = 0) -> tuple[list[Voice], list[Voice]]:
    """Random training and test voices whose base+variant combinations are disjoint.

    Every base voice × variant combination (variants include "no variant") goes to exactly one
    side, so test voices are held-out *voices*, not just held-out prosody. Each side is half
    English dialects, half accented voices; combinations are used without repetition until a
    side's pool is exhausted. Rate, pitch and intonation range are drawn uniformly from
    `RATE_RANGE`, `PITCH_RANGE` and `INTONATION_RANGE`. Deterministic for a seed (given the
    installed espeak-ng-data).
    """
    if n_train < 0 or n_test < 0:
        raise ValueError(f"n_train and n_test must be >= 0, got {n_train} and {n_test}")
    rng = np.random.default_rng(seed)
    variants = ["", *list_variants()]
    voices = list_voices()
    english = [v for v in voices if v in ENGLISH_VOICES]
    accents = [v for v in voices if v not in ENGLISH_VOICES]
    total = n_train + n_test
    train_pools: list[list[str]] = []
    test_pools: list[list[str]] = []
    for bases in (english, accents):
        combos = [f"{b}+{v}" if v else b for b in bases for v in variants]
        combos = [combos[i] for i in rng.permutation(len(combos))]
        if not combos:
            continue
        k = round(len(combos) * n_test / total) if total else 0
        k = max(k, 1 if n_test else 0)
        k = min(k, len(combos) - 1 if n_train else len(combos))
        test_pools.append(combos[:k])
        train_pools.append(combos[k:])

    def draw(pools: list[list[str]], n: int) -> list[Voice]:
        pools = [p for p in pools if p]
        if n and not pools:
            raise RuntimeError("no espeak voices available to draw from")
        names: list[str] = []
        for i, pool in enumerate(pools):
            count = n // len(pools) + (1 if i < n % len(pools) else 0)
            while count > 0:
                take = min(count, len(pool))
                names.extend(pool[j] for j in rng.permutation(len(pool))[:take])
                count -= take
        out = [
            Voice(
                name=name,
                rate=int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                pitch=int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                pitch_range=int(rng.integers(INTONATION_RANGE[0], INTONATION_RANGE[1] + 1)),
            )
            for name in names
        ]
        return [out[i] for i in rng.permutation(len(out))]

    return draw(train_pools, n_train), draw(test_pools, n_test)


# --- the espeak engine ---------------------------------------------------------------------------


class _Engine:
    """One espeak-ng instance per process, reloaded before every clip (see module docstring).

    Not thread-safe by itself: callers hold `_LOCK`.
    """

    def __init__(self) -> None:
        import _ctypes

        import espeakng_loader

        self._data_parent = str(_data_dir().parent).encode()
        self._fds: list[int] = []
        # A private in-memory copy of the library: its own static state, and reloading it can
        # neither disturb nor be pinned by other users of espeakng_loader's library here.
        self._source = espeakng_loader.get_library_path()
        self._lib_path = self._memory_file(Path(self._source)) or self._source
        self._dlclose = getattr(_ctypes, "dlclose", None)
        self._chunks: list[bytes] = []
        # keep a reference: ctypes does not, and a collected callback would crash espeak
        self._callback = _SYNTH_CALLBACK(self._on_audio)
        self._lib: ctypes.CDLL | None = None
        self._dirty = True
        # espeak_ng_SetVoiceByFile skips espeak's scan of all ~250 voice files (the slowest part
        # of a fresh instance) but wants a short, lower-case path: in-memory copies of the voice
        # files, named /proc/self/fd/N, fit.
        self._voice_files: dict[str, str | None] = {}
        self.sample_rate = self._load()

    def _memory_file(self, source: Path) -> str | None:
        """An anonymous in-memory copy of `source` as /proc/self/fd/N (Linux), else None."""
        if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
            return None
        try:
            fd = os.memfd_create(source.name.lower())
        except OSError:
            return None
        self._fds.append(fd)
        with open(source, "rb") as f:
            data = f.read()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        return f"/proc/self/fd/{fd}"

    def close_files(self) -> None:
        """Close the in-memory copies (used in a forked child, which builds its own engine)."""
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    @staticmethod
    def _configure(lib: ctypes.CDLL) -> None:
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SYNTH_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetVoiceByFile.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByFile.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_Terminate.argtypes = []
        lib.espeak_Terminate.restype = ctypes.c_int
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        lib.espeak_ng_SetRandSeed.restype = None

    def _load(self) -> int:
        if self._lib is not None:
            self._lib.espeak_Terminate()
            handle = self._lib._handle
            self._lib = None
            self._dlclose(handle)  # type: ignore[misc]
        try:
            lib = ctypes.CDLL(self._lib_path)
        except OSError:  # the in-memory copy could not be loaded: use the wheel's file
            if self._lib_path == self._source:
                raise
            self._lib_path = self._source
            lib = ctypes.CDLL(self._lib_path)
        self._configure(lib)
        rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data_parent, _ESPEAK_INITIALIZE_DONT_EXIT
        )
        if rate <= 0:
            raise RuntimeError(
                f"espeak_Initialize failed ({rate}) for data in {self._data_parent.decode()}"
            )
        lib.espeak_SetSynthCallback(self._callback)
        self._lib = lib
        self._dirty = False
        return rate

    def _on_audio(self, wav: ctypes._Pointer, numsamples: int, events: int | None) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0  # continue synthesis

    def _voice_path(self, voice: Voice) -> bytes | None:
        """Short lower-case path for espeak_SetVoiceByFile, or None to use SetVoiceByName."""
        base = voice.base.lower()
        if base not in self._voice_files:
            self._voice_files[base] = self._memory_file(_lang_files()[base])
        target = self._voice_files[base]
        if target is None:
            return None
        path = f"{target}+{voice.variant}" if voice.variant else target
        return path.encode() if len(path.encode()) <= _MAX_VOICE_ID else None

    def synthesize(self, word: str, voice: Voice) -> np.ndarray:
        """Raw int16 samples at `sample_rate` for one word."""
        source = _lang_files().get(voice.base.lower())
        if source is None:
            raise ValueError(f"unknown espeak voice {voice.base!r} (in {voice.name!r})")
        if voice.variant and voice.variant not in _variant_files():
            raise ValueError(f"unknown espeak voice variant {voice.variant!r} (in {voice.name!r})")
        identifier = _voice_identifier(voice.base.lower())
        if len(identifier) + 1 + len(voice.variant) > _MAX_VOICE_ID:
            raise ValueError(f"espeak voice name too long: {identifier}+{voice.variant}")
        if self._dirty and self._dlclose is not None:
            self._load()
        lib = self._lib
        assert lib is not None
        self._dirty = True
        path = self._voice_path(voice)
        if path is not None:
            status = lib.espeak_SetVoiceByFile(path)
        else:
            status = lib.espeak_SetVoiceByName(voice.name.encode())
        if status != _EE_OK:
            raise ValueError(f"espeak could not load voice {voice.name!r} (status {status})")
        for parameter, value in (
            (_ESPEAK_RATE, voice.rate),
            (_ESPEAK_VOLUME, _VOLUME),
            (_ESPEAK_PITCH, voice.pitch),
            (_ESPEAK_RANGE, voice.pitch_range),
        ):
            status = lib.espeak_SetParameter(parameter, value, 0)
            if status != _EE_OK:
                raise RuntimeError(f"espeak_SetParameter({parameter}) failed for {voice.id}")
        text = word.encode("utf-8") + b"\0"
        # breath noise comes from espeak's own generator, which espeak_Initialize seeds with time()
        lib.espeak_ng_SetRandSeed(zlib.crc32(f"{voice.id}|{word}".encode()))
        self._chunks = []
        status = lib.espeak_Synth(
            text, len(text), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        lib.espeak_Synchronize()
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed (status {status}) for {word!r}, {voice.id}")
        samples = np.frombuffer(b"".join(self._chunks), dtype=np.int16)
        self._chunks = []
        return samples


_LOCK = threading.Lock()
_ENGINE: _Engine | None = None


def _after_fork_in_child() -> None:
    # a forked child gets its own engine (and lock: another thread may have held it at the fork)
    global _LOCK, _ENGINE
    _LOCK = threading.Lock()
    if _ENGINE is not None:
        _ENGINE.close_files()
    _ENGINE = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _engine() -> _Engine:
    """The process-wide espeak engine, created on first use. Call with `_LOCK` held."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Engine()
    return _ENGINE


# --- signal processing ---------------------------------------------------------------------------


@lru_cache(maxsize=8)
def _resample_filter(up: int, down: int) -> np.ndarray:
    """The FIR that scipy.signal.resample_poly designs by default, computed once."""
    from scipy.signal import firwin

    max_rate = max(up, down)
    taps = firwin(2 * 10 * max_rate + 1, 1.0 / max_rate, window=("kaiser", 5.0))
    taps = taps.astype(np.float32)
    taps.flags.writeable = False
    return taps


def _trim(x: np.ndarray, sample_rate: int) -> np.ndarray:
    """Drop leading/trailing frames whose RMS is far below the loudest frame (keeps one frame)."""
    frame = max(1, int(round(_TRIM_FRAME_S * sample_rate)))
    n = len(x) // frame
    if n == 0:
        return x
    rms = np.sqrt(np.mean(np.square(x[: n * frame].reshape(n, frame)), axis=1))
    threshold = max(float(rms.max()) * 10 ** (_TRIM_REL_DB / 20), _TRIM_ABS_FLOOR)
    loud = np.flatnonzero(rms > threshold)
    if len(loud) == 0:
        return x[:0]
    start = max(0, (int(loud[0]) - 1) * frame)
    stop = min(len(x), (int(loud[-1]) + 2) * frame)
    return x[start:stop]


def synthesize(word: str, voice: Voice, sample_rate: int = 8000) -> np.ndarray:
    """Speak `word` with `voice`: float32 mono waveform in [-1, 1] at `sample_rate` Hz.

    Leading and trailing silence is trimmed (10 ms frames more than 40 dB below the loudest one).
    The result depends only on (word, voice, sample_rate). Raises RuntimeError naming the voice
    if espeak produced no audible sound, ValueError for an unknown voice or variant.
    """
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not word.strip():
        raise ValueError("word must be non-empty")
    with _LOCK:
        engine = _engine()
        raw = engine.synthesize(word, voice)
        native = engine.sample_rate
    x = _trim(raw.astype(np.float32) / 32768.0, native)
    if len(x) == 0:
        raise RuntimeError(f"espeak produced no audio for {word!r} with voice {voice.id}")
    if sample_rate != native:
        from scipy.signal import resample_poly

        ratio = Fraction(sample_rate, native)
        up, down = ratio.numerator, ratio.denominator
        x = resample_poly(x, up, down, window=_resample_filter(up, down)).astype(np.float32)
    x = np.clip(x, -1.0, 1.0)
    if len(x) == 0 or not np.any(x):
        raise RuntimeError(f"espeak produced no audio for {word!r} with voice {voice.id}")
    return np.ascontiguousarray(x, dtype=np.float32)


# --- datasets ------------------------------------------------------------------------------------


def _cache_key(voices: list[Voice], sample_rate: int) -> str:
    from importlib.metadata import version

    spec = {
        "format": _CACHE_FORMAT,
        "sample_rate": sample_rate,
        "words": DIGIT_WORDS,
        "voices": [[v.name, v.rate, v.pitch, v.pitch_range] for v in voices],
        "espeakng_loader": version("espeakng-loader"),
        "trim": [_TRIM_FRAME_S, _TRIM_REL_DB, _TRIM_ABS_FLOOR],
        "volume": _VOLUME,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:24]


def _load_cache(
    path: Path, labels: np.ndarray, voice_index: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray] | None:
    """The cached clips, or None if the file is unreadable or does not match."""
    n_clips = len(labels)
    try:
        with np.load(path, allow_pickle=False) as data:
            audio = data["audio"]
            offsets = data["offsets"]
            cached_labels = data["labels"]
            cached_voice_index = data["voice_index"]
    except (OSError, KeyError, ValueError, EOFError):
        return None
    if (
        audio.dtype != np.float32
        or audio.ndim != 1
        or offsets.shape != (n_clips + 1,)
        or not np.array_equal(cached_labels, labels)
        or not np.array_equal(cached_voice_index, voice_index)
        or offsets[0] != 0
        or offsets[-1] != len(audio)
        or np.any(np.diff(offsets) <= 0)
    ):
        return None
    waves = [audio[offsets[i] : offsets[i + 1]].copy() for i in range(n_clips)]
    return waves, labels.copy(), voice_index.copy()


def _save_cache(
    path: Path, waves: list[np.ndarray], labels: np.ndarray, voice_index: np.ndarray
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    offsets = np.zeros(len(waves) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(w) for w in waves])
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(
                f,
                audio=np.concatenate(waves).astype(np.float32),
                offsets=offsets,
                labels=labels,
                voice_index=voice_index,
            )
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def synthesize_digits(
    voices: list[Voice],
    sample_rate: int = 8000,
    cache_dir: Path | None = None,
    progress: bool = True,
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Every voice saying every digit word.

    Returns (waveforms, labels, voice_index): clip ``i`` is `synthesize(DIGIT_WORDS[labels[i]],
    voices[voice_index[i]], sample_rate)`; clips are ordered voice by voice, digits 0..9 within a
    voice. labels and voice_index are int64. With `cache_dir`, the result is stored in (and later
    read back from) ``digits-<hash>.npz`` keyed by the voice list and sample rate.
    """
    voices = list(voices)
    n_clips = len(voices) * len(DIGIT_WORDS)
    labels = np.tile(np.arange(len(DIGIT_WORDS), dtype=np.int64), len(voices))
    voice_index = np.repeat(np.arange(len(voices), dtype=np.int64), len(DIGIT_WORDS))
    cache_path = None
    if cache_dir is not None:
        cache_path = Path(cache_dir) / f"digits-{_cache_key(voices, sample_rate)}.npz"
        if cache_path.exists():
            cached = _load_cache(cache_path, labels, voice_index)
            if cached is not None:
                return cached
    waves: list[np.ndarray] = []
    if progress and voices:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns = (
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]} clips/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns) as bar:
            task = bar.add_task("speaking digits", total=n_clips, rate="-")
            start = time.perf_counter()
            for voice in voices:
                waves.extend(synthesize(w, voice, sample_rate) for w in DIGIT_WORDS)
                speed = len(waves) / max(time.perf_counter() - start, 1e-9)
                bar.update(task, completed=len(waves), rate=f"{speed:,.0f}")
    else:
        for voice in voices:
            waves.extend(synthesize(w, voice, sample_rate) for w in DIGIT_WORDS)
    if cache_path is not None and waves:
        _save_cache(cache_path, waves, labels, voice_index)
    return waves, labels, voice_index
