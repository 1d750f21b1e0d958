"""Write a large generated image–caption set as shards, for the data-pipeline benchmark.

    .venv/bin/python benchmarks/make_shards.py --n 200000 --out /tmp/anybind-shards/200k

Each sample is a 64×64 RGB JPEG of one of ten shapes in a random colour, place and size, on a
random background, with the caption "a {colour} {shape} on a {colour} background"; the shape is
the label. Decoded to float32 the set is n × 3 × 64 × 64 × 4 bytes (200,000 → 9.8 GB), so a run
that held it in memory would show. Images are drawn in worker processes and written through
`anybind.data.shards.write_shards` (the code `anybind shard` runs).
"""

from __future__ import annotations

import argparse
import io
import json
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from anybind.data.sample import RawRecord
from anybind.data.shards import write_shards
from anybind.modalities import EncodedFile, build_modality

SHAPES = ["square", "circle", "triangle", "cross", "bar", "ring", "diamond", "dot", "frame", "x"]
COLOURS = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40),
    "purple": (150, 50, 190), "orange": (240, 140, 30), "white": (245, 245, 245),
    "black": (15, 15, 15),
}  # fmt: skip
SIZE = 64


def draw(i: int, seed: int) -> tuple[bytes, str, int]:
    rng = np.random.default_rng([seed, i])
    label = int(rng.integers(len(SHAPES)))
    names = list(COLOURS)
    fg, bg = rng.choice(len(names), size=2, replace=False)
    image = Image.new("RGB", (SIZE, SIZE), COLOURS[names[bg]])
    pen = ImageDraw.Draw(image)
    r = int(rng.integers(10, 24))
    cx, cy = (int(v) for v in rng.integers(r, SIZE - r, size=2))
    box = (cx - r, cy - r, cx + r, cy + r)
    colour = COLOURS[names[fg]]
    shape = SHAPES[label]
    if shape == "square":
        pen.rectangle(box, fill=colour)
    elif shape == "circle":
        pen.ellipse(box, fill=colour)
    elif shape == "triangle":
        pen.polygon([(cx, cy - r), (cx - r, cy + r), (cx + r, cy + r)], fill=colour)
    elif shape == "cross":
        pen.rectangle((cx - r, cy - r // 4, cx + r, cy + r // 4), fill=colour)
        pen.rectangle((cx - r // 4, cy - r, cx + r // 4, cy + r), fill=colour)
    elif shape == "bar":
        pen.rectangle((cx - r, cy - r // 3, cx + r, cy + r // 3), fill=colour)
    elif shape == "ring":
        pen.ellipse(box, outline=colour, width=max(2, r // 4))
    elif shape == "diamond":
        pen.polygon([(cx, cy - r), (cx + r, cy), (cx, cy + r), (cx - r, cy)], fill=colour)
    elif shape == "dot":
        pen.ellipse((cx - r // 3, cy - r // 3, cx + r // 3, cy + r // 3), fill=colour)
    elif shape == "frame":
        pen.rectangle(box, outline=colour, width=max(2, r // 4))
    else:
        pen.line((cx - r, cy - r, cx + r, cy + r), fill=colour, width=max(2, r // 4))
        pen.line((cx - r, cy + r, cx + r, cy - r), fill=colour, width=max(2, r // 4))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    caption = f"a {names[fg]} {shape} on a {names[bg]} background"
    return buffer.getvalue(), caption, label


def records(n: int, seed: int, processes: int):
    with Pool(processes) as pool:
        for i, (jpeg, caption, label) in enumerate(
            pool.imap(_draw, ((i, seed) for i in range(n)), chunksize=512)
        ):
            yield RawRecord(
                {"image": EncodedFile(jpeg, f"{i}.jpg"), "text": caption},
                label=label, id=f"gen-{i}", path="generated", row=i + 1,
            )  # fmt: skip


def _draw(args: tuple[int, int]) -> tuple[bytes, str, int]:
    return draw(*args)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--samples-per-shard", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--processes", type=int, default=2)
    args = parser.parse_args()
    modalities = {
        "image": build_modality("image", {"size": (SIZE, SIZE), "channels": 3}),
        "text": build_modality("text"),
    }
    started = time.perf_counter()
    index, _ = write_shards(
        records(args.n, args.seed, args.processes), modalities, args.out,
        samples_per_shard=args.samples_per_shard, class_names=SHAPES, check=False,
        total=args.n,
    )  # fmt: skip
    wall = time.perf_counter() - started
    size = sum(p.stat().st_size for p in args.out.glob("shard-*.tar"))
    print(json.dumps({
        "samples": index.samples, "shards": len(index.shards), "bytes_on_disk": size,
        "decoded_float32_bytes": index.samples * 3 * SIZE * SIZE * 4, "wall_s": round(wall, 1),
    }))  # fmt: skip


if __name__ == "__main__":
    main()
