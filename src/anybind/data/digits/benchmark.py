"""Records of the digits benchmark: UCI images and espeak-ng speech, labelled 0–9.

Training and test speech come from disjoint voices (base voice + variant), so the audio test
measures generalisation to unheard speakers, not to unheard takes of known ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from anybind.config.schema import DigitsSource
from anybind.data.digits.images import DIGIT_NAMES, uci_digits
from anybind.data.sample import RawRecord

SAMPLE_RATE = 8000

DIGITS_CAPTIONS = {
    "image": [
        "a handwritten digit {}",
        "the number {} written by hand",
        "a picture of a {}",
        "a drawing of the digit {}",
    ],
    "audio": [
        "the spoken word {}",
        "someone saying {}",
        "a voice saying the number {}",
        "a recording of the word {}",
    ],
}


def cache_dir() -> Path:
    return Path(os.environ.get("ANYBIND_CACHE", Path.home() / ".cache" / "anybind"))


def stroke_image_records(source: DigitsSource) -> list[RawRecord]:
    """The training split's synthetic pen-stroke digits (none unless configured)."""
    if source.split != "train" or not source.stroke_images_per_class:
        return []
    from anybind.data.digits.stroke_images import stroke_digits

    images, labels = stroke_digits(source.stroke_images_per_class, seed=source.seed)
    return [
        RawRecord(values={"image": img}, label=int(y), id=f"stroke-{i}", source="stroke digits")
        for i, (img, y) in enumerate(zip(images, labels, strict=True))
    ]


def digits_records(source: DigitsSource, *, progress: bool = True) -> list[RawRecord]:
    records: list[RawRecord] = []
    if "image" in source.modalities:
        images, labels = uci_digits(source.split, source.image_test_fraction, source.seed)
        records += [
            RawRecord(
                values={"image": img},
                label=int(y),
                id=f"img-{source.split}-{i}",
                source="sklearn digits",
            )
            for i, (img, y) in enumerate(zip(images, labels, strict=True))
        ]
        records += stroke_image_records(source)
    if "audio" in source.modalities:
        from anybind.data.digits.speech import digit_voices, synthesize_digits

        train, test = digit_voices(source.train_voices, source.test_voices, seed=source.seed)
        voices = train if source.split == "train" else test
        waves, labels, voice_idx = synthesize_digits(
            voices, sample_rate=SAMPLE_RATE, cache_dir=cache_dir(), progress=progress
        )
        records += [
            RawRecord(
                values={"audio": {"waveform": w, "sample_rate": SAMPLE_RATE}},
                label=int(y),
                id=f"speech-{source.split}-{v}-{voices[v].id}-{int(y)}",
                source="espeak-ng",
            )
            for w, y, v in zip(waves, labels, voice_idx, strict=True)
        ]
    return records


__all__ = ["DIGITS_CAPTIONS", "DIGIT_NAMES", "digits_records"]
