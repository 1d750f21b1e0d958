"""Digit images: scikit-learn's bundled UCI 8×8 digits, and grey bitmaps (MNIST) mapped onto them.

The UCI digits (Alpaydin & Kaynak) are 32×32 binary bitmaps of each digit's bounding box, reduced
to 8×8 by counting the set pixels in 4×4 blocks (values 0–16). `mnist_to_uci` repeats those steps
on MNIST (a 20×20 box centred by mass in 28×28, grey levels): crop to the bounding box, scale the
longer side to fill 32 pixels, threshold, count 4×4 blocks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def uci_digits(
    split: str, test_fraction: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """float32 images (N, 8, 8) in [0, 1] and int64 labels; a stratified, seeded split."""
    data = load_digits()
    images = (data.images / 16.0).astype(np.float32)
    labels = data.target.astype(np.int64)
    train_x, test_x, train_y, test_y = train_test_split(
        images, labels, test_size=test_fraction, random_state=seed, stratify=labels
    )
    return (train_x, train_y) if split == "train" else (test_x, test_y)


def bitmap_to_uci(grey: np.ndarray, threshold: float = 0.35) -> np.ndarray:
    """One grey image (H, W) in [0, 1], ink bright → float32 (8, 8) in [0, 1], the UCI way.

    Crop to the bounding box of the pixels above `threshold`, scale the longer side to fill
    32 pixels (centred), binarise at 0.5 and count the set pixels in 4×4 blocks (÷16).
    """
    out = np.zeros((8, 8), dtype=np.float32)
    rows, cols = np.nonzero(grey > threshold)
    if len(rows) == 0:
        return out
    box = grey[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    h, w = box.shape
    scale = 32.0 / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    resized = (
        np.asarray(
            Image.fromarray((box * 255).astype(np.uint8)).resize((nw, nh), Image.BILINEAR),
            dtype=np.float32,
        )
        / 255.0
    )
    frame = np.zeros((32, 32), dtype=np.float32)
    top, left = (32 - nh) // 2, (32 - nw) // 2
    frame[top : top + nh, left : left + nw] = resized > 0.5
    return frame.reshape(8, 4, 8, 4).sum(axis=(1, 3)) / 16.0


def mnist_to_uci(images: np.ndarray, threshold: float = 0.35) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST → float32 (N, 8, 8) in [0, 1], made the way the UCI digits were."""
    out = np.zeros((len(images), 8, 8), dtype=np.float32)
    for i, img in enumerate(images):
        out[i] = bitmap_to_uci(img.astype(np.float32) / 255.0, threshold)
    return out
