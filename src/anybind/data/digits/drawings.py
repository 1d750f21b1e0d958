"""Digits being written: the stroke skeletons of `stroke_images`, in the order and direction people
write them, and the views of one drawing that the grown modalities see.

A drawing picks an allograph of the digit and one of its writing orders (which stroke first, in
which direction, where a closed loop starts: a 0 is mostly written anticlockwise from the top, a 9's
loop anticlockwise from its right side and then the stem, a 5's top bar before or after the body,
an 8 as one looping stroke from its upper right or as two loops), jitters the control points
(shared corners move together), passes a spline through each stroke and bends the whole with a
random affine map (rotation, shear, aspect, squeeze) and a smooth random displacement. The pen
path is the strokes in writing order joined by straight pen-up moves. The views:

- `trajectory`: the UCI pendigits format — the path resampled to 8 points equally spaced along
  its arc length (pen-up moves included), y growing upwards, translated and scaled so that the
  coordinate with the larger range spans 0–100 (the other keeps the aspect ratio and starts at 0),
  rounded to integers; shape (2, 8): x then y.
- `point_cloud`: points sampled uniformly along the pen-down strokes, spread over the pen's width
  and extruded along z (a 3-D print of the digit); shape (points, 3).
- `frames`: the digit being drawn, frame t showing the ink up to (t + 1)/T of the pen-down arc
  length, each frame in the UCI image format (the finished digit's bounding box scaled to fill
  32×32, binary ink, 4×4 block counts ÷ 16); shape (T, 8, 8). Its last frame is the drawing's image.

No real handwriting is used; everything is a pure function of (digit, generator state).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from anybind.data.digits.stroke_images import SKELETONS, ellipse, spline

#: allographs of the pen trajectories beyond the images' skeletons (index after those): a 1 whose
#: flag starts halfway down (a long upstroke into the stem), a 9 with a small loop and a tail
#: curling back to the left
EXTRA_ALLOGRAPHS: dict[int, list[list[list[tuple[float, float]]]]] = {
    1: [[[(0.05, 0.45), (0.6, 0.0)], [(0.6, 0.0), (0.45, 1.0)]]],
    9: [
        [
            ellipse(0.5, 0.2, 0.32, 0.2, 0.0, 2.05 * np.pi),
            [(0.82, 0.2), (0.8, 0.6), (0.6, 0.95), (0.3, 1.0), (0.0, 0.85)],
        ]
    ],
}


def allographs(digit: int) -> list[list[list[tuple[float, float]]]]:
    return SKELETONS[digit] + EXTRA_ALLOGRAPHS.get(digit, [])


#: (stroke index, reversed, start point of a closed stroke after reversal)
Step = tuple[int, bool, int]
F, R = False, True

#: digit → writing orders, each (allograph, steps); an order listed twice is drawn twice as often.
# fmt: off
WRITING: dict[int, list[tuple[int, list[Step]]]] = {
    0: [(0, [(0, R, 0)]), (0, [(0, R, 0)]), (1, [(0, R, 0)]), (0, [(0, F, 0)])],
    1: [(0, [(0, F, 0)]), (1, [(0, F, 0), (1, F, 0)]), (2, [(0, F, 0), (1, F, 0), (2, F, 0)]),
        (3, [(0, F, 0), (1, F, 0)])],
    2: [(0, [(0, F, 0), (1, F, 0)]), (1, [(0, F, 0)])],
    3: [(0, [(0, F, 0), (1, F, 0)]), (1, [(0, F, 0), (1, F, 0), (2, F, 0)])],
    4: [(0, [(0, F, 0), (1, F, 0), (2, F, 0)]), (1, [(0, F, 0), (1, F, 0), (2, F, 0)]),
        (2, [(0, F, 0), (1, F, 0)])],
    5: [(0, [(0, F, 0), (1, F, 0), (2, F, 0)]), (0, [(0, R, 0), (1, F, 0), (2, F, 0)]),
        (1, [(0, F, 0), (1, F, 0), (2, F, 0)])],
    6: [(0, [(0, F, 0)]), (1, [(0, F, 0)])],
    7: [(0, [(0, F, 0), (1, F, 0)]), (1, [(0, F, 0), (1, F, 0), (2, F, 0)]),
        (2, [(0, F, 0), (1, F, 0)])],
    8: [(0, [(0, R, 6)]), (0, [(0, R, 7)]), (0, [(0, R, 9)]), (0, [(0, F, 0)]),
        (1, [(0, R, 0), (1, R, 0)])],
    9: [(0, [(0, R, 0), (1, F, 0)]), (1, [(0, R, 0), (1, F, 0)]), (2, [(0, R, 0), (1, F, 0)]),
        (3, [(0, R, 0), (1, F, 0)]), (0, [(0, R, 4), (1, F, 0)]), (1, [(0, R, 4), (1, F, 0)]),
        (4, [(0, R, 0), (1, F, 0)]), (4, [(0, R, 4), (1, F, 0)]), (0, [(0, F, 0), (1, F, 0)])],
}
# fmt: on


@dataclass(frozen=True)
class Drawing:
    """One written digit: its pen-down strokes in writing order, each a dense (n, 2) curve in
    screen coordinates (x right, y down, about the unit box)."""

    digit: int
    strokes: list[np.ndarray]

    def path(self) -> np.ndarray:
        """The whole pen path (n, 2): strokes joined by straight pen-up moves."""
        return np.concatenate(self.strokes)


def ordered_strokes(
    digit: int, allograph: int, steps: list[Step]
) -> list[list[tuple[float, float]]]:
    """The control points of each stroke in writing order and direction."""
    strokes = allographs(digit)[allograph]
    out = []
    for index, reverse, start in steps:
        points = list(strokes[index])[::-1] if reverse else list(strokes[index])
        if start:  # a closed stroke (first point = last point) written from another point
            cycle = points[:-1]
            points = cycle[start:] + cycle[:start] + [cycle[start]]
        out.append(points)
    return out


def draw_digit(digit: int, rng: np.random.Generator) -> Drawing:
    """A random drawing of `digit`, a pure function of the generator's state."""
    allograph, steps = WRITING[digit][rng.integers(len(WRITING[digit]))]
    jitter = rng.uniform(0.03, 0.08)
    moved: dict[tuple[float, float], np.ndarray] = {}
    curves = []
    for stroke in ordered_strokes(digit, allograph, steps):
        pts = []
        for x, y in stroke:
            key = (round(x, 3), round(y, 3))
            if key not in moved:
                moved[key] = np.array([x, y]) + rng.normal(0.0, jitter, 2)
            pts.append(moved[key])
        curves.append(spline(np.array(pts)))
    return Drawing(digit, bend(curves, rng))


def bend(curves: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    """Random proportions (a power of the unit box's y and x), one random affine map (rotation
    ±15°, shear ±0.35, aspect e^±0.25, horizontal squeeze 0.45–1) and one smooth displacement
    field (two random sine waves per axis), shared by all strokes of the drawing."""
    angle = np.deg2rad(rng.uniform(-15, 15))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    shear = np.array([[1.0, rng.uniform(-0.35, 0.35)], [0.0, 1.0]])
    aspect = np.exp(rng.uniform(-0.25, 0.25))
    scale = np.diag([aspect * rng.uniform(0.45, 1.0), 1 / aspect])
    forward = rotation @ shear @ scale
    waves = rng.normal(0.0, 1.0, (2, 2, 2)) * 2.5  # axis, wave, (fx, fy) frequencies
    phases = rng.uniform(0, 2 * np.pi, (2, 2))
    amplitude = rng.uniform(0.0, 0.05)
    # proportions: the unit box's y (and, less, x) raised to a random power, so one writer's top
    # part is larger than another's (a 9's loop, a 6's bowl, a 5's bar)
    power = np.exp(np.array([rng.uniform(-0.25, 0.25), rng.uniform(-0.6, 0.6)]))
    out = []
    for curve in curves:
        unit = np.clip(curve, 0.0, 1.0)
        curve = curve + unit**power - unit
        p = (curve - 0.5) @ forward.T
        shift = np.stack([np.sin(p @ waves[a].T + phases[a]).sum(axis=1) for a in range(2)], axis=1)
        out.append(p + amplitude * shift)
    return out


def trajectory(drawing: Drawing, points: int = 8) -> np.ndarray:
    """float32 (2, points) in the pendigits format: see the module docstring."""
    path = drawing.path() * np.array([1.0, -1.0])  # y grows upwards, as on the tablet
    seg = np.linalg.norm(np.diff(path, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    at = np.linspace(0.0, arc[-1], points)
    xy = np.stack([np.interp(at, arc, path[:, 0]), np.interp(at, arc, path[:, 1])])
    xy -= xy.min(axis=1, keepdims=True)
    xy *= 100.0 / max(float(xy.max()), 1e-9)
    return np.round(xy).astype(np.float32)


def point_cloud(drawing: Drawing, rng: np.random.Generator, points: int = 256) -> np.ndarray:
    """float32 (points, 3): x, y (upwards), z; the strokes spread over a random pen width and
    extruded to a random depth."""
    dense = np.concatenate([resample_curve(s, 200) for s in drawing.strokes])
    pick = dense[rng.integers(len(dense), size=points)]
    radius = rng.uniform(0.02, 0.05)
    angle = rng.uniform(0, 2 * np.pi, points)
    spread = np.sqrt(rng.uniform(0, 1, points)) * radius
    xy = pick + np.stack([np.cos(angle), np.sin(angle)], axis=1) * spread[:, None]
    z = rng.uniform(0.0, rng.uniform(0.15, 0.35), points)
    return np.stack([xy[:, 0], -xy[:, 1], z], axis=1).astype(np.float32)


def resample_curve(curve: np.ndarray, n: int) -> np.ndarray:
    """n points equally spaced along a curve's arc length."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(curve, axis=0), axis=1))])
    if arc[-1] == 0:
        return np.repeat(curve[:1], n, axis=0)
    at = np.linspace(0.0, arc[-1], n)
    return np.stack([np.interp(at, arc, curve[:, 0]), np.interp(at, arc, curve[:, 1])], axis=1)


def frames(drawing: Drawing, count: int = 8, pen: float = 2.5) -> np.ndarray:
    """float32 (count, 8, 8) in [0, 1]: the digit being drawn, in the UCI image format."""
    path = drawing.path()
    lo, hi = path.min(axis=0), path.max(axis=0)
    scale = 31.0 / max(float((hi - lo).max()), 1e-9)
    offset = (32.0 - (hi - lo) * scale) / 2
    strokes = [(s - lo) * scale + offset for s in drawing.strokes]
    lengths = [float(np.linalg.norm(np.diff(s, axis=0), axis=1).sum()) for s in strokes]
    total = sum(lengths)
    out = np.zeros((count, 8, 8), dtype=np.float32)
    for t in range(count):
        budget = total * (t + 1) / count
        img = Image.new("1", (32, 32), 0)
        draw = ImageDraw.Draw(img)
        for stroke, length in zip(strokes, lengths, strict=True):
            if budget <= 0:
                break
            part = stroke_prefix(stroke, min(budget, length))
            draw.line([tuple(p) for p in part], fill=1, width=max(1, round(pen)))
            budget -= length
        ink = np.asarray(img, dtype=np.float32)
        out[t] = ink.reshape(8, 4, 8, 4).sum(axis=(1, 3)) / 16.0
    return out


def stroke_prefix(stroke: np.ndarray, length: float) -> np.ndarray:
    """The first `length` of a polyline's arc length."""
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(stroke, axis=0), axis=1))])
    keep = stroke[arc < length]
    end = np.stack([np.interp(length, arc, stroke[:, 0]), np.interp(length, arc, stroke[:, 1])])
    return np.concatenate([keep, end[None]])


def drawings(per_class: int, seed: int | tuple[int, ...]) -> tuple[list[Drawing], np.ndarray]:
    """10·per_class drawings, class-balanced, and their int64 labels; a pure function of the
    arguments."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(10, dtype=np.int64), per_class)
    return [draw_digit(int(d), rng) for d in labels], labels
