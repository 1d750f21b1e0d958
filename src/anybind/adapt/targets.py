"""Importers for the real target domains, with the preprocessing that maps each onto what the
digits space was trained on.

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
"""

from __future__ import annotations

from pathlib import Path

from anybind.config.schema import ArraysSource, FolderSource, Source
from anybind.errors import AnybindError

#: target name → (modality, how to build its source from a path)
TARGETS = ("mnist", "fsdd")


def mnist_source(path: str | Path) -> ArraysSource:
    return ArraysSource(
        path=str(path), keys={"image": "images"}, label_key="labels", preprocess="mnist_to_uci"
    )


def fsdd_source(path: str | Path) -> FolderSource:
    return FolderSource(path=str(path), modality="audio", pattern=r"^(?P<label>\d)_", glob="*.wav")


def target_source(kind: str, path: str | Path) -> tuple[Source, str]:
    """A named target domain → (source, modality)."""
    if kind == "mnist":
        return mnist_source(path), "image"
    if kind == "fsdd":
        return fsdd_source(path), "audio"
    raise AnybindError(f"unknown target domain '{kind}' (known: {', '.join(TARGETS)})")


def shared_targets(shared: Path) -> dict[str, tuple[Source, str]]:
    """The two real domains in ../shared/data."""
    return {
        "mnist": target_source("mnist", shared / "mnist" / "mnist-test-first5000.npz"),
        "fsdd": target_source("fsdd", shared / "fsdd" / "recordings"),
    }
