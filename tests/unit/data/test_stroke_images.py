"""Synthetic pen-stroke digits: format, determinism, labels that mean what they say."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from anybind.config.schema import DigitsSource
from anybind.data.digits.benchmark import digits_records
from anybind.data.digits.images import bitmap_to_uci, uci_digits
from anybind.data.digits.stroke_images import SKELETONS, render_strokes, stroke_digits
from anybind.errors import ConfigError


def test_images_are_in_uci_format_and_balanced():
    images, labels = stroke_digits(6, seed=0)
    assert images.shape == (60, 8, 8) and images.dtype == np.float32
    assert labels.dtype == np.int64 and np.bincount(labels).tolist() == [6] * 10
    # 4×4 block counts of a binary 32×32 frame: multiples of 1/16 in [0, 1]
    np.testing.assert_allclose(images * 16, np.round(images * 16), atol=1e-5)
    assert images.min() == 0.0 and images.max() == 1.0
    # cropped to the bounding box and scaled to fill: every image touches two opposite edges
    for img in images:
        ink = img > 0
        assert (ink[0].any() and ink[-1].any()) or (ink[:, 0].any() and ink[:, -1].any())


def test_a_pure_function_of_per_class_and_seed():
    a, _ = stroke_digits(3, seed=7)
    b, _ = stroke_digits(3, seed=7)
    c, _ = stroke_digits(3, seed=8)
    np.testing.assert_array_equal(a, b)
    assert np.abs(a - c).sum() > 1.0


def test_every_allograph_draws_ink_inside_the_canvas():
    rng = np.random.default_rng(0)
    for digit, allographs in SKELETONS.items():
        assert allographs, digit
        for _ in range(10 * len(allographs)):
            grey = render_strokes(digit, rng)
            assert grey.shape == (64, 64) and grey.min() >= 0.0 and grey.max() <= 1.0
            assert grey.sum() > 50  # a pen stroke, not a speck
            border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
            assert border.max() < 0.5  # the warp does not push the digit off the canvas


def test_labels_transfer_to_real_uci_handwriting():
    # a linear classifier that has seen only stroke digits reads the UCI digits (43 real
    # writers) far above chance (10%): the skeletons are the digits their labels name
    images, labels = stroke_digits(60, seed=0)
    clf = LogisticRegression(C=0.5, max_iter=2000).fit(images.reshape(len(images), -1), labels)
    test_x, test_y = uci_digits("test")
    accuracy = (clf.predict(test_x.reshape(len(test_x), -1)) == test_y).mean()
    assert accuracy > 0.6, accuracy


def test_bitmap_to_uci_matches_a_filled_box():
    grey = np.zeros((64, 64), dtype=np.float32)
    grey[10:50, 20:40] = 1.0  # 40 tall, 20 wide → 32 tall, 16 wide, centred
    expected = np.zeros((8, 8))
    expected[:, 2:6] = 1.0
    np.testing.assert_array_equal(bitmap_to_uci(grey), expected)


def test_only_the_training_split_gets_stroke_digits():
    train = digits_records(
        DigitsSource(split="train", modalities=["image"], stroke_images_per_class=2)
    )
    test = digits_records(
        DigitsSource(split="test", modalities=["image"], stroke_images_per_class=2)
    )
    strokes = [r for r in train if r.source == "stroke digits"]
    assert len(strokes) == 20 and sorted({r.label for r in strokes}) == list(range(10))
    assert len({r.id for r in train}) == len(train)  # ids stay unique
    assert not [r for r in test if r.source == "stroke digits"]


def test_a_negative_count_is_a_config_error():
    from anybind.config import config_from_dict

    with pytest.raises(ConfigError, match="stroke_images_per_class"):
        config_from_dict(
            {
                "modalities": {"image": {"encoder": {"type": "image_cnn"}}},
                "data": {
                    "train": [
                        {
                            "type": "digits",
                            "split": "train",
                            "modalities": ["image"],
                            "stroke_images_per_class": -1,
                        }
                    ]
                },
            }
        )
