"""Fusing the demo space's image and audio: mean vs a transformer fusion trained on synthetic
pairs, with and without modality dropout; scored on AV digits (real MNIST + FSDD pairs) and with
one modality missing. The numbers of docs/fusion.md and BENCHMARKS.md ("Fusing modalities").

    .venv/bin/python benchmarks/fuse.py --base runs/demo --json benchmarks/results/fuse.json

Needs the demo run (`make demo`) and ../shared/data. Writes the AV digits pairing manifest to
benchmarks/results/av-digits-pairs.jsonl.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from anybind.data.av_digits import write_pairs
from anybind.data.named import named_source
from anybind.recipes.demo import find_shared_data
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.extend import extend
from anybind.space import load_space

CONFIG = Path(__file__).parents[1] / "src" / "anybind" / "configs" / "fuse-digits.yaml"


def variant(kind: str, dropout: bool) -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    config["fusion"]["type"] = kind
    if not dropout:
        config["fusion"].pop("dropout")
    return config


def predictor(kind: str) -> dict[str, Any]:
    """A predictor of each modality from the other instead of a fusion."""
    config = yaml.safe_load(CONFIG.read_text())
    del config["fusion"]
    config["predictor"] = {"modalities": ["image", "audio"], "kind": kind, "hidden": 512}
    config["optim"]["epochs"] = 5
    return config


def top1(report: dict[str, Any]) -> dict[str, float]:
    scores = {m: r["top1"] for m, r in report["zero_shot"].items()}
    for pair in (
        "image->audio",
        "audio_predicted->audio",
        "audio->image",
        "image_predicted->image",
    ):
        if pair in report["retrieval"]:
            scores[f"R@1 {pair}"] = report["retrieval"][pair]["R@1"]
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("runs/demo"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-fuse"))
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shared = find_shared_data()
    if shared is None:
        raise SystemExit("needs ../shared/data (MNIST and FSDD)")
    write_pairs(shared, Path("benchmarks/results/av-digits-pairs.jsonl"))
    domains = {
        "av_digits": [named_source("avdigits", shared)[0]],
        "image_only": [named_source("mnist", shared / "mnist" / "mnist-test-first5000.npz")[0]],
        "audio_only": [named_source("fsdd", shared / "fsdd" / "recordings")[0]],
    }
    results: dict[str, Any] = {}
    cases = {
        "mean": variant("mean", False),
        "transformer": variant("transformer", False),
        "transformer+dropout": variant("transformer", True),
        **{f"predictor-{k}": predictor(k) for k in ("mlp", "shift", "codebook", "anchor")},
    }
    for name, extension in cases.items():
        out = args.work / name
        if out.exists():
            shutil.rmtree(out)
        started = time.perf_counter()
        extend(args.base, extension, out, progress=False)
        wall = time.perf_counter() - started
        space = load_space(out)
        row: dict[str, Any] = {"wall_s": wall}
        row["in_domain"] = top1(evaluate_sources(space, space.config.data.eval, progress=False))
        for domain, sources in domains.items():
            row[domain] = top1(evaluate_sources(space, sources, progress=False))
        results[name] = row
        print(name, json.dumps(row), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
