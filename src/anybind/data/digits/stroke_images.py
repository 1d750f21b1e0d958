"""Synthetic pen-stroke digits: hand-shaped skeletons, jittered, drawn with a random pen.

The UCI digits come from 43 writers; a tower trained on them alone meets a new writer population
(MNIST) with a large gap. Handwriting has a handful of allographs per digit — an open-top 4, a 9
with a straight stem, a 1 with a flag and a base, a 7 with a crossbar. Each digit here has a few
such skeletons, written as pen strokes through control points in a unit box (x right, y down).
A sample jitters every control point, passes a smooth parametric spline through each stroke
(scipy `splprep`), draws it with a round pen of random width, warps the result (rotation, shear,
aspect change, and an elastic distortion after Simard et al. 2003: a Gaussian-smoothed random
displacement field) and reduces it with `images.bitmap_to_uci` exactly as the UCI bitmaps were
made (bounding box → 32×32 → 4×4 block counts). No real handwriting is used. Pure function of
(per_class, seed).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw
from scipy.interpolate import splev, splprep
from scipy.ndimage import gaussian_filter, map_coordinates

from anybind.data.digits.images import bitmap_to_uci

Stroke = list[tuple[float, float]]


def ellipse(cx: float, cy: float, rx: float, ry: float, start: float, turn: float) -> Stroke:
    """Points along an ellipse from angle `start` through `turn` radians (clockwise on screen)."""
    angles = start + np.linspace(0.0, turn, 9)
    return [(cx + rx * np.cos(a), cy + ry * np.sin(a)) for a in angles]


#: digit → allographs → strokes → control points (x, y) in the unit box.
# fmt: off
SKELETONS: dict[int, list[list[Stroke]]] = {
    0: [
        [ellipse(0.5, 0.5, 0.32, 0.48, -np.pi / 2, 2.1 * np.pi)],
        [ellipse(0.5, 0.5, 0.4, 0.48, -2.2, 2.05 * np.pi)],
    ],
    1: [
        [[(0.5, 0.0), (0.5, 1.0)]],
        [[(0.25, 0.25), (0.55, 0.0)], [(0.55, 0.0), (0.5, 1.0)]],
        [[(0.25, 0.22), (0.55, 0.0)], [(0.55, 0.0), (0.55, 1.0)], [(0.25, 1.0), (0.85, 1.0)]],
    ],
    2: [
        [[(0.12, 0.25), (0.35, 0.02), (0.68, 0.02), (0.85, 0.28), (0.55, 0.62), (0.1, 1.0)],
         [(0.1, 1.0), (0.9, 0.98)]],
        [[(0.15, 0.2), (0.5, 0.0), (0.85, 0.2), (0.7, 0.55), (0.15, 0.95), (0.3, 0.82),
          (0.5, 0.95), (0.9, 1.0)]],
    ],
    3: [
        [[(0.12, 0.12), (0.5, 0.0), (0.82, 0.18), (0.72, 0.4), (0.4, 0.5)],
         [(0.4, 0.5), (0.8, 0.62), (0.85, 0.85), (0.5, 1.0), (0.1, 0.88)]],
        [[(0.1, 0.05), (0.85, 0.05)], [(0.85, 0.05), (0.45, 0.42)],
         [(0.45, 0.42), (0.85, 0.6), (0.8, 0.9), (0.45, 1.0), (0.1, 0.85)]],
    ],
    4: [
        [[(0.62, 0.0), (0.08, 0.66)], [(0.08, 0.66), (0.92, 0.66)], [(0.68, 0.3), (0.68, 1.0)]],
        [[(0.22, 0.0), (0.15, 0.55)], [(0.15, 0.55), (0.9, 0.55)], [(0.75, 0.0), (0.72, 1.0)]],
        [[(0.25, 0.0), (0.12, 0.5), (0.45, 0.55), (0.85, 0.45)], [(0.7, 0.05), (0.68, 1.0)]],
    ],
    5: [
        [[(0.85, 0.0), (0.25, 0.0)], [(0.25, 0.0), (0.2, 0.45)],
         [(0.2, 0.45), (0.55, 0.36), (0.85, 0.58), (0.78, 0.88), (0.45, 1.0), (0.12, 0.88)]],
        [[(0.25, 0.0), (0.2, 0.45)],
         [(0.2, 0.45), (0.6, 0.4), (0.85, 0.65), (0.65, 0.95), (0.15, 0.9)],
         [(0.25, 0.02), (0.85, 0.0)]],
    ],
    6: [
        [[(0.78, 0.02), (0.42, 0.12), (0.2, 0.45), (0.2, 0.8), (0.45, 1.0), (0.76, 0.86),
          (0.74, 0.6), (0.45, 0.52), (0.2, 0.68)]],
        [[(0.65, 0.0), (0.35, 0.35), (0.2, 0.75), (0.45, 1.0), (0.8, 0.8), (0.55, 0.55),
          (0.25, 0.72)]],
    ],
    7: [
        [[(0.08, 0.02), (0.9, 0.0)], [(0.9, 0.0), (0.42, 1.0)]],
        [[(0.08, 0.02), (0.9, 0.0)], [(0.9, 0.0), (0.42, 1.0)], [(0.35, 0.5), (0.85, 0.5)]],
        [[(0.1, 0.1), (0.15, 0.02), (0.88, 0.02)], [(0.88, 0.02), (0.6, 0.45), (0.5, 1.0)]],
    ],
    8: [
        [[(0.52, 0.48), (0.2, 0.28), (0.32, 0.02), (0.7, 0.03), (0.8, 0.28), (0.5, 0.5),
          (0.15, 0.75), (0.3, 1.0), (0.72, 1.0), (0.85, 0.75), (0.52, 0.48)]],
        [ellipse(0.5, 0.25, 0.26, 0.25, 0.0, 2.05 * np.pi),
         ellipse(0.5, 0.74, 0.34, 0.26, 0.0, 2.05 * np.pi)],
    ],
    9: [
        [ellipse(0.45, 0.28, 0.32, 0.27, 0.0, 2.05 * np.pi), [(0.77, 0.28), (0.72, 1.0)]],
        [ellipse(0.45, 0.28, 0.32, 0.27, 0.0, 2.05 * np.pi),
         [(0.77, 0.28), (0.75, 0.72), (0.5, 1.0), (0.22, 0.9)]],
        [ellipse(0.5, 0.3, 0.3, 0.28, 0.3, 2.0 * np.pi), [(0.8, 0.3), (0.5, 1.0)]],
        [ellipse(0.42, 0.22, 0.28, 0.2, 0.0, 2.05 * np.pi), [(0.7, 0.22), (0.6, 0.6), (0.5, 1.0)]],
    ],
}
# fmt: on

_CANVAS = 64
_BOX = 30  # the unit box spans this many pixels: room for warp, jitter and pen inside the canvas


def spline(points: np.ndarray, samples: int = 60) -> np.ndarray:
    """A smooth curve through the control points (straight line for two points)."""
    if len(points) < 3:
        t = np.linspace(0.0, 1.0, samples)[:, None]
        return points[0] * (1 - t) + points[-1] * t
    keep = np.r_[True, np.linalg.norm(np.diff(points, axis=0), axis=1) > 1e-6]
    points = points[keep]
    k = min(3, len(points) - 1)
    tck, _ = splprep([points[:, 0], points[:, 1]], s=0, k=k)
    x, y = splev(np.linspace(0.0, 1.0, samples), tck)
    return np.stack([x, y], axis=1)


def warp(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random rotation (±15°), shear (±0.35), aspect change (e^±0.25) and elastic distortion."""
    size = image.shape[0]
    angle = np.deg2rad(rng.uniform(-15, 15))
    shear = rng.uniform(-0.35, 0.35)
    aspect = np.exp(rng.uniform(-0.25, 0.25))
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    forward = rotation @ np.array([[1.0, shear], [0.0, 1.0]]) @ np.diag([aspect, 1 / aspect])
    inverse = np.linalg.inv(forward)  # output pixel → source pixel
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) - size / 2
    src_y = inverse[0, 0] * yy + inverse[0, 1] * xx + size / 2
    src_x = inverse[1, 0] * yy + inverse[1, 1] * xx + size / 2
    alpha, sigma = rng.uniform(3, 7), rng.uniform(4, 6)
    for grid in (src_y, src_x):
        grid += gaussian_filter(rng.uniform(-1, 1, (size, size)), sigma) * alpha * sigma
    return map_coordinates(image, [src_y, src_x], order=1, mode="constant").astype(np.float32)


def render_strokes(digit: int, rng: np.random.Generator) -> np.ndarray:
    """One pen-drawn digit as a float32 (64, 64) grey image in [0, 1], clear of the edges.

    A draw whose ink reaches the canvas edge (a rare extreme of jitter and warp, under 0.5% of
    draws) would be cut off, so it is drawn again from the same generator.
    """
    while True:
        grey = _draw_once(digit, rng)
        edges = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
        if edges.max() < 0.5:
            return grey


def _draw_once(digit: int, rng: np.random.Generator) -> np.ndarray:
    allographs = SKELETONS[digit]
    strokes = allographs[rng.integers(len(allographs))]
    width = rng.uniform(0.45, 1.0) * _BOX  # the box is squeezed horizontally by a random factor
    jitter = rng.uniform(0.03, 0.09)
    img = Image.new("L", (_CANVAS, _CANVAS), 0)
    draw = ImageDraw.Draw(img)
    pen = int(rng.integers(3, 8))
    # shared points (a corner where two strokes meet) move together: jitter by rounded position
    moved: dict[tuple[float, float], np.ndarray] = {}
    for stroke in strokes:
        pts = []
        for x, y in stroke:
            key = (round(x, 3), round(y, 3))
            if key not in moved:
                moved[key] = np.array([x, y]) + rng.normal(0.0, jitter, 2)
            pts.append(moved[key])
        curve = spline(np.array(pts))
        xy = np.stack(
            [
                (_CANVAS - width) / 2 + curve[:, 0] * width,
                (_CANVAS - _BOX) / 2 + curve[:, 1] * _BOX,
            ],
            axis=1,
        )
        draw.line([tuple(p) for p in xy], fill=255, width=pen)  # 60 short segments: no joints
        r = pen / 2
        for px, py in (xy[0], xy[-1]):  # round pen ends
            draw.ellipse([px - r, py - r, px + r, py + r], fill=255)
    return warp(np.asarray(img, dtype=np.float32) / 255.0, rng)


def stroke_digits(per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """float32 images (10·per_class, 8, 8) in [0, 1] in UCI format, and int64 labels 0–9."""
    if per_class < 0:
        raise ValueError(f"per_class must be >= 0, got {per_class}")
    rng = np.random.default_rng(seed)
    images = np.zeros((10 * per_class, 8, 8), dtype=np.float32)
    labels = np.repeat(np.arange(10, dtype=np.int64), per_class)
    for i, digit in enumerate(labels):
        images[i] = bitmap_to_uci(render_strokes(int(digit), rng))
    return images, labels
