"""Named data sets: `NAME:PATH` in `--data` (the CLI and the API) builds a source with the
preprocessing that maps the set onto what the digits space was trained on. A new one is a
function with `@NAMED_SOURCES.register(name)` here.

- MNIST (`.npz` with `images` uint8 (N, 28, 28) and `labels`): MNIST digits are size-normalised
  into a 20×20 box and centred by centre of mass in 28×28, while the UCI digits the space saw were
  cropped to their bounding box, scaled to fill 32×32, thresholded and block-summed to 8×8. So each
  MNIST digit is cropped to its ink, scaled to fill the frame, thresholded and block-averaged the
  same way (`mnist_to_uci`).
- FSDD (a folder of `{digit}_{speaker}_{index}.wav`, 8 kHz mono): the label is the leading digit;
  recordings are trimmed to near-minimal silence, so the audio modality centres each one in its
  fixed-length window (as it does the synthesised speech, which is made at FSDD's 8 kHz) and
  levels are normalised per utterance (peak scaling before the speech embedding; per-mel-bin CMVN
  in `audio_cnn`, which also removes channel colouring).
- UCI pendigits (rows `x1,y1,…,x8,y8,digit`): real pen trajectories on the 0–100 grid; the
  synthetic trajectories of the drawings are made in exactly that format, so nothing is mapped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from anybind.config.schema import (
    ArraysSource,
    AVDigitsSource,
    FolderSource,
    PenDigitsSource,
    Source,
)
from anybind.registry import Registry


@dataclass(frozen=True)
class NamedSource:
    """How to build a named data set's source from a path, and the modality it holds."""

    modality: str
    build: Callable[[str], Source]


NAMED_SOURCES: Registry[NamedSource] = Registry("named data set")


def named(name: str, modality: str) -> Callable[[Callable[[str], Source]], Callable[[str], Source]]:
    """Register the decorated `path → Source` function as the data set `name` of `modality`."""

    def decorator(build: Callable[[str], Source]) -> Callable[[str], Source]:
        NAMED_SOURCES.register(name)(NamedSource(modality, build))
        return build

    return decorator


@named("mnist", "image")
def mnist_source(path: str) -> Source:
    return ArraysSource(
        path=path, keys={"image": "images"}, label_key="labels", preprocess="mnist_to_uci"
    )


@named("fsdd", "audio")
def fsdd_source(path: str) -> Source:
    return FolderSource(path=path, modality="audio", pattern=r"^(?P<label>\d)_", glob="*.wav")


@named("pendigits", "timeseries")
def pendigits_source(path: str) -> Source:
    return PenDigitsSource(path=path)


@named("avdigits", "image")
def av_digits_source(path: str) -> Source:
    """`avdigits:SHARED` — the folder holding mnist/ and fsdd/."""
    return AVDigitsSource(path=path)


def named_source(name: str, path: str | Path, *, key: str = "--data") -> tuple[Source, str]:
    """The named data set `name` read from `path` → (source, modality)."""
    entry = NAMED_SOURCES.get(name, key=key)
    return entry.build(str(path)), entry.modality


def shared_targets(shared: Path) -> dict[str, tuple[Source, str]]:
    """The two real domains in ../shared/data."""
    return {
        "mnist": named_source("mnist", shared / "mnist" / "mnist-test-first5000.npz"),
        "fsdd": named_source("fsdd", shared / "fsdd" / "recordings"),
    }
