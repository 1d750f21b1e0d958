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
    "timeseries": [
        "the pen trajectory of the digit {}",
        "someone writing the number {}",
        "a {} written on a tablet",
        "the pen moving to write {}",
    ],
    "pointcloud": [
        "a 3d model of the digit {}",
        "a point cloud of the number {}",
        "a 3d printed {}",
        "the shape of a {} in 3d",
    ],
    "video": [
        "a video of someone drawing the digit {}",
        "a clip of the number {} being written",
        "an animation of writing {}",
        "a {} being drawn",
    ],
}

#: the modalities made from drawings of digits being written
DRAWING_MODALITIES = ("timeseries", "pointcloud", "video")


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
    if source.paired:
        records = paired_records(records, source.seed)
    records += drawing_records(source)
    return records


def paired_records(records: list[RawRecord], seed: int) -> list[RawRecord]:
    """Each speech record with an image of the same digit in one record: per digit, the images
    in a random order (`default_rng((seed, digit))`), the j-th clip of the digit taking image
    j mod n. Images left over are not used."""
    import numpy as np

    images = [r for r in records if "image" in r.values]
    speech = [r for r in records if "audio" in r.values]
    out = []
    for digit in range(10):
        pool = [r for r in images if r.label == digit]
        clips = [r for r in speech if r.label == digit]
        if not pool or not clips:
            continue
        order = np.random.default_rng((seed, digit)).permutation(len(pool))
        for j, clip in enumerate(clips):
            image = pool[order[j % len(pool)]]
            out.append(
                RawRecord(
                    values={"image": image.values["image"], "audio": clip.values["audio"]},
                    label=digit,
                    id=f"pair-{clip.id}-{image.id}",
                    source="digits pairs",
                )
            )
    return out


def drawing_records(source: DigitsSource) -> list[RawRecord]:
    """One record per synthetic drawing with each listed drawing view (and its image when
    `drawing_images`); the train and test splits are drawn from different generators."""
    wanted = [m for m in DRAWING_MODALITIES if m in source.modalities]
    if not wanted or not source.drawings_per_class:
        return []
    import numpy as np

    from anybind.data.digits import drawings as pen

    split = 0 if source.split == "train" else 1
    drawn, labels = pen.drawings(source.drawings_per_class, seed=(source.seed, split))
    records = []
    for i, (drawing, y) in enumerate(zip(drawn, labels, strict=True)):
        values: dict[str, object] = {}
        clip = pen.frames(drawing) if "video" in wanted or source.drawing_images else None
        if "timeseries" in wanted:
            values["timeseries"] = pen.trajectory(drawing)
        if "pointcloud" in wanted:
            rng = np.random.default_rng((source.seed, split, i))
            values["pointcloud"] = pen.point_cloud(drawing, rng)
        if "video" in wanted:
            values["video"] = clip[:, None]  # (T, 1, 8, 8)
        if source.drawing_images:
            values["image"] = clip[-1]
        records.append(
            RawRecord(
                values=values, label=int(y), id=f"drawing-{source.split}-{i}", source="drawings"
            )
        )
    return records


__all__ = ["DIGITS_CAPTIONS", "DIGIT_NAMES", "digits_records"]
