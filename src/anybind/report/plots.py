"""The report's plots: numbers in, a PNG (base64, to inline in HTML) out. Matplotlib's Agg
backend, so nothing needs a display or the network."""

from __future__ import annotations

import base64
import io

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(figure)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def curves(
    steps: list[float],
    series: dict[str, list[float]],
    title: str,
    ylabel: str,
    xlabel: str = "step",
) -> str:
    figure, ax = plt.subplots(figsize=(7, 3.2))
    for name, values in series.items():
        ax.plot(steps[: len(values)], values, label=name, linewidth=1.2)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.grid(alpha=0.3)
    if len(series) > 1:
        ax.legend(fontsize=8)
    return png(figure)


def bars(
    labels: list[str], groups: dict[str, list[float]], title: str, marked: list[bool] | None = None
) -> str:
    """Grouped bars in percent; `marked` hatches the bars of some labels (emergent pairs)."""
    figure, ax = plt.subplots(figsize=(max(4, 1.1 * len(labels) + 2), 3.2))
    width = 0.8 / max(1, len(groups))
    x = np.arange(len(labels))
    for j, (name, values) in enumerate(groups.items()):
        drawn = ax.bar(x + j * width, [100 * v for v in values], width, label=name)
        for bar, hatch in zip(drawn, marked or [False] * len(labels), strict=True):
            if hatch:
                bar.set_hatch("//")
    ax.set_xticks(x + width * (len(groups) - 1) / 2, labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="%", ylim=(0, 100), title=title)
    ax.grid(axis="y", alpha=0.3)
    if len(groups) > 1:
        ax.legend(fontsize=8)
    return png(figure)


def heatmap(
    matrix: np.ndarray, rows: list[str], cols: list[str], title: str, fmt: str = "d"
) -> str:
    figure, ax = plt.subplots(figsize=(0.45 * len(cols) + 2.5, 0.45 * len(rows) + 1.5))
    image = ax.imshow(matrix, cmap="viridis")
    ax.set_xticks(range(len(cols)), cols, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(rows)), rows, fontsize=7)
    if matrix.size <= 400:
        for (i, j), v in np.ndenumerate(matrix):
            ax.text(j, i, format(v, fmt), ha="center", va="center", fontsize=6, color="white")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, fraction=0.046)
    return png(figure)


def scatter(points: np.ndarray, colours: list[str], title: str) -> str:
    """2-D points coloured by category (a legend per category)."""
    figure, ax = plt.subplots(figsize=(5, 4.2))
    for name in dict.fromkeys(colours):
        mask = np.array([c == name for c in colours])
        ax.scatter(points[mask, 0], points[mask, 1], s=6, alpha=0.6, label=name)
    ax.set(title=title, xlabel="PC 1", ylabel="PC 2")
    ax.legend(fontsize=7, markerscale=2)
    return png(figure)
