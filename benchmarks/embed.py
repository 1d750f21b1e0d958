"""`anybind embed` against a plain batched loop over the same towers and the same data.

    .venv/bin/python benchmarks/embed.py [--run runs/demo] [--data digits:test] [--repeats 3]

The plain loop draws the same batches through a DataLoader (same decoding, same batch size),
calls each tower on the rows that hold its modality, normalises, and keeps the vectors in
memory; `anybind embed` does that and also writes the parts, the Parquet tables and the
manifest. Both are timed after one warm-up pass (the speech synthesis and the feature cache of
the digits set are filled by it). Bar: embed ≥ 0.9× the plain loop's items/s.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.data import BatchSampler

from anybind.api import embed
from anybind.data.loader import LoaderSettings, batches, make_loader
from anybind.recipes.data import build_dataset
from anybind.recipes.source_specs import parse_sources
from anybind.space import load_space


@torch.no_grad()
def plain_loop(run: Path, data: str, batch_size: int) -> tuple[int, float]:
    space = load_space(run).eval()
    sources = parse_sources([data], modality=None, pattern="", keys=[], preprocess="none")
    dataset, _ = build_dataset(sources, space.config, space.modalities, progress=False,
                               cache="none")  # fmt: skip
    started = time.perf_counter()
    sampler = BatchSampler(range(len(dataset)), batch_size, False)
    out = []
    for batch in batches(make_loader(dataset, sampler, LoaderSettings())):
        for name, tower in space.towers.items():
            if name in batch and bool(batch[f"{name}_mask"].any()):
                rows = batch[f"{name}_mask"].nonzero().flatten().tolist()
                x = batch[name]
                x = [x[i] for i in rows] if isinstance(x, list) else x[rows]
                out.append(torch.nn.functional.normalize(tower(x).float(), dim=-1))
    return len(dataset), time.perf_counter() - started


def anybind_embed(run: Path, data: str, batch_size: int) -> tuple[int, float]:
    tmp = Path(tempfile.mkdtemp())
    try:
        started = time.perf_counter()
        manifest = embed(run, [data], tmp / "emb", batch_size=batch_size)
        return manifest["samples"], time.perf_counter() - started
    finally:
        shutil.rmtree(tmp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--data", default="digits:test")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    plain_loop(args.run, args.data, args.batch_size)  # warm-up: synthesis, feature cache
    plain, ours = [], []
    for _ in range(args.repeats):  # alternated, so drift on a shared machine hits both
        n, seconds = plain_loop(args.run, args.data, args.batch_size)
        plain.append(n / seconds)
        n, seconds = anybind_embed(args.run, args.data, args.batch_size)
        ours.append(n / seconds)
    result = {"items": n, "plain_items_per_s": max(plain), "embed_items_per_s": max(ours),
              "ratio": max(ours) / max(plain), "repeats": args.repeats}  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
