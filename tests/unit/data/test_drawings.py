"""The drawings of digits being written and their views: the pendigits trajectory format
(checked against a naive arc-length resampling), writing order, frames and point clouds."""

from __future__ import annotations

import numpy as np
import pytest

from anybind.data.digits import drawings as pen
from anybind.data.digits.stroke_images import SKELETONS


def naive_trajectory(path: np.ndarray) -> np.ndarray:
    """Walk the polyline and emit a point every L/7 of arc length, then normalise."""
    path = path * np.array([1.0, -1.0])
    seg = [float(np.hypot(*(b - a))) for a, b in zip(path[:-1], path[1:], strict=True)]
    total = sum(seg)
    points, walked, i = [path[0]], 0.0, 0
    for k in range(1, 8):
        target = total * k / 7
        while i < len(seg) - 1 and walked + seg[i] < target:
            walked += seg[i]
            i += 1
        t = (target - walked) / seg[i] if seg[i] else 0.0
        points.append(path[i] + t * (path[i + 1] - path[i]))
    xy = np.array(points).T
    xy = xy - xy.min(axis=1, keepdims=True)
    return np.round(xy * 100.0 / xy.max())


def test_trajectories_are_in_the_pendigits_format():
    drawn, labels = pen.drawings(3, seed=0)
    for d in drawn:
        t = pen.trajectory(d)
        assert t.shape == (2, 8) and t.dtype == np.float32
        assert np.array_equal(t, np.round(t))
        assert t.min(axis=1).tolist() == [0.0, 0.0]
        assert t.max() == 100.0  # the larger range spans 0–100, the other keeps the aspect
        np.testing.assert_allclose(t, naive_trajectory(d.path()), atol=1.0)
    assert labels.tolist() == [d for d in range(10) for _ in range(3)]


def test_writing_orders_follow_how_people_write():
    # a 0 mostly anticlockwise from the top: its second point lies left of its first
    zero = pen.ordered_strokes(0, 0, [(0, True, 0)])[0]
    assert zero[0][1] < 0.1 and zero[1][0] < zero[0][0]
    # an 8 written as one loop from its upper right
    eight = pen.ordered_strokes(8, 0, [(0, True, 6)])[0]
    assert eight[0] == eight[-1] == SKELETONS[8][0][0][4]
    # a 5 whose bar is drawn left to right first, then the stem from the bar's left end
    five = pen.ordered_strokes(5, 0, [(0, True, 0), (1, False, 0), (2, False, 0)])
    assert five[0][0][0] < five[0][-1][0] and five[1][0] == five[0][0]
    for digit, orders in pen.WRITING.items():
        for allograph, steps in orders:
            strokes = pen.allographs(digit)[allograph]
            assert sorted(s for s, _, _ in steps) == list(range(len(strokes)))


def test_y_grows_upwards_like_the_tablet():
    rng = np.random.default_rng(0)
    # a 7 starts top left: in pendigits coordinates a high y and a low x
    seven = [pen.trajectory(pen.draw_digit(7, rng)) for _ in range(20)]
    assert np.mean([t[1, 0] for t in seven]) > 70 and np.mean([t[0, 0] for t in seven]) < 30


def test_drawings_are_a_pure_function_of_the_seed():
    a, _ = pen.drawings(2, seed=(0, 1))
    b, _ = pen.drawings(2, seed=(0, 1))
    c, _ = pen.drawings(2, seed=(0, 0))
    same = [np.array_equal(pen.trajectory(x), pen.trajectory(y)) for x, y in zip(a, b, strict=True)]
    other = [
        np.array_equal(pen.trajectory(x), pen.trajectory(y)) for x, y in zip(a, c, strict=True)
    ]
    assert all(same) and not all(other)


def test_frames_show_the_ink_growing_to_the_finished_digit():
    drawing = pen.draw_digit(3, np.random.default_rng(1))
    clip = pen.frames(drawing, count=6)
    assert clip.shape == (6, 8, 8)
    assert np.array_equal(clip * 16, np.round(clip * 16))  # UCI block counts ÷ 16
    ink = clip.sum(axis=(1, 2))
    assert np.all(np.diff(ink) >= 0) and ink[0] < ink[-1]
    assert np.all(clip[:-1] <= clip[-1] + 1e-6)  # every frame is part of the last one


def test_point_clouds_lie_on_the_extruded_strokes():
    drawing = pen.draw_digit(4, np.random.default_rng(2))
    cloud = pen.point_cloud(drawing, np.random.default_rng(3), points=300)
    assert cloud.shape == (300, 3)
    assert cloud[:, 2].min() >= 0 and cloud[:, 2].max() <= 0.35
    dense = np.concatenate([pen.resample_curve(s, 400) for s in drawing.strokes])
    dense = dense * np.array([1.0, -1.0])
    gaps = np.linalg.norm(cloud[:, None, :2] - dense[None], axis=2).min(axis=1)
    assert gaps.max() <= 0.05 + 0.01  # within the pen's radius of a stroke


@pytest.mark.parametrize("split", ["train", "test"])
def test_the_digits_source_yields_one_record_per_drawing(split):
    from anybind.config.schema import DigitsSource
    from anybind.data.digits.benchmark import drawing_records

    source = DigitsSource(
        split=split, modalities=["timeseries", "video"], drawings_per_class=2, drawing_images=True
    )
    records = drawing_records(source)
    assert len(records) == 20
    r = records[0]
    assert set(r.values) == {"timeseries", "video", "image"}
    assert r.values["video"].shape == (8, 1, 8, 8)
    np.testing.assert_array_equal(r.values["image"], r.values["video"][-1, 0])
    other = drawing_records(
        source.model_copy(update={"split": "test" if split == "train" else "train"})
    )
    assert not np.array_equal(other[0].values["timeseries"], r.values["timeseries"])
