"""Separate towers vs a shared backbone (one shared transformer, modality experts, a routed
mixture of experts with and without its balancing loss) on the digits benchmark, at (nearly)
equal parameter count and equal training steps. The numbers of docs/architectures.md and
BENCHMARKS.md ("Backbones").

    .venv/bin/python benchmarks/architectures.py --json benchmarks/results/architectures.json

Every variant is the demo config (src/anybind/configs/digits.yaml) with the image and audio
encoders replaced: image 2×2 patches (16 tokens per 8×8 image) and audio speech-embedding
windows (one token each) through transformers of width 64, 2 layers, 4 heads; the text tower
stays the frozen MiniLM anchor. Each variant's feed-forward width is chosen so that its
trainable parameters match the separate towers' (the table prints them). Scored on the
held-out synthetic digits and, when ../shared/data is there, on real MNIST and FSDD.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import yaml

from anybind.config import config_from_dict
from anybind.data.named import named_source
from anybind.recipes.demo import find_shared_data
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.train import train
from anybind.space import Space, load_space

CONFIG = Path(__file__).parents[1] / "src" / "anybind" / "configs" / "digits.yaml"
WIDTH, LAYERS, HEADS, HIDDEN, EXPERTS = 64, 2, 4, 256, 4
PATCH = {"image": 2, "audio": 1}


def variant(kind: str, hidden: int, balance: dict[str, float] | None = None) -> dict[str, Any]:
    config = yaml.safe_load(CONFIG.read_text())
    body = {"width": WIDTH, "layers": LAYERS, "heads": HEADS, "hidden": hidden}
    for m, patch in PATCH.items():
        if kind == "separate":
            config["modalities"][m]["encoder"] = {"type": "token_transformer", "patch": patch,
                                                  **body}  # fmt: skip
        else:
            config["modalities"][m]["encoder"] = {"type": "backbone", "patch": patch}
    if kind != "separate":
        ffn = "moe" if kind.startswith("moe") else kind
        config["backbone"] = {"ffn": ffn, **body, "experts": EXPERTS, "top_k": 1}
        if balance is not None:
            config["backbone"]["balance"] = balance
    return config


def trainable(space: Space) -> int:
    return sum(p.numel() for p in space.parameters() if p.requires_grad)


def matched_hidden(kind: str, target: int) -> int:
    """The feed-forward width whose trainable parameter count is nearest `target`."""

    def count(hidden: int) -> int:
        return trainable(Space(config_from_dict(variant(kind, hidden))))

    return min(range(32, 4 * HIDDEN + 1, 16), key=lambda h: abs(count(h) - target))


def scores(report: dict[str, Any]) -> dict[str, float]:
    out = {m: r["top1"] for m, r in report["zero_shot"].items()}
    for pair in ("image->audio", "audio->image"):
        if pair in report["retrieval"]:
            out[f"R@1 {pair}"] = report["retrieval"][pair]["R@1"]
    return out


def run_variant(name: str, config: dict[str, Any], work: Path, real: dict) -> dict[str, Any]:
    out = work / name
    if out.exists():
        shutil.rmtree(out)
    started = time.perf_counter()
    summary = train(config_from_dict(config), out, progress=False)
    wall = time.perf_counter() - started
    space = load_space(out)
    report = evaluate_sources(space, space.config.data.eval, progress=False)
    row: dict[str, Any] = {
        "params": trainable(Space(config_from_dict(config))),
        "train_samples_per_s": summary.samples_per_s,
        "wall_s": wall,
        "in_domain": scores(report),
        "expert_load": report.get("expert_load", {}),
    }
    for domain, sources in real.items():
        row[domain] = scores(evaluate_sources(space, sources, progress=False))
    return row


def share_text(load: dict[str, Any]) -> str:
    """Each modality's token share per expert, averaged over the layers."""
    if not load:
        return "—"
    parts = []
    for m, layers in load["share"].items():
        mean = [sum(col) / len(layers) for col in zip(*layers, strict=True)]
        parts.append(f"{m} " + "/".join(f"{100 * s:.0f}" for s in mean))
    return "; ".join(parts)


def table(results: dict[str, Any]) -> str:
    """The markdown table of docs/architectures.md."""
    real = any("mnist" in r for r in results.values())
    head = [
        "variant", "trainable params", "image top-1", "audio top-1", "R@1 image→audio",
        "R@1 audio→image", *(["MNIST top-1", "FSDD top-1"] if real else []),
        "train samples/s", "expert share × E (min–max)", "token share % per expert",
    ]  # fmt: skip
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in results.items():
        d, load = r["in_domain"], r.get("expert_load") or {}
        cells = [name, f"{r['params']:,}", *(f"{100 * d[k]:.1f}" for k in (
            "image", "audio", "R@1 image->audio", "R@1 audio->image"))]  # fmt: skip
        if real:
            cells += [f"{100 * r['mnist']['image']:.1f}", f"{100 * r['fsdd']['audio']:.1f}"]
        cells.append(f"{r['train_samples_per_s']:,.0f}")
        ratio = f"{load['min_over_mean']:.2f}–{load['max_over_mean']:.2f}" if load else "—"
        cells += [ratio, share_text(load)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/bench-architectures"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--only", nargs="*", default=None, help="run only these variants")
    parser.add_argument("--table", action="store_true", help="print the table of --json")
    args = parser.parse_args()
    if args.table:
        print(table(json.loads(args.json.read_text())))
        return
    shared = find_shared_data()
    real = {}
    if shared is not None:
        real = {
            "mnist": [named_source("mnist", shared / "mnist" / "mnist-test-first5000.npz")[0]],
            "fsdd": [named_source("fsdd", shared / "fsdd" / "recordings")[0]],
        }
    target = trainable(Space(config_from_dict(variant("separate", HIDDEN))))
    no_balance = {"load": 0.0, "local_entropy": 0.0, "global_entropy": 0.0}
    switch = {**no_balance, "load": 0.01}  # Switch Transformer's weight, alone (and others)
    cases = {
        "separate": variant("separate", HIDDEN),
        "shared": variant("shared", matched_hidden("shared", target)),
        "experts": variant("experts", matched_hidden("experts", target)),
        "moe": variant("moe", matched_hidden("moe", target)),
        **{
            f"moe-load-{w}": variant("moe", matched_hidden("moe", target), {**switch, "load": w})
            for w in (0.01, 0.03, 0.1)
        },
        "moe-no-balance": variant("moe", matched_hidden("moe", target), no_balance),
    }
    results: dict[str, Any] = {}
    previous = json.loads(args.json.read_text()) if args.json and args.json.exists() else {}
    for name, config in cases.items():
        if args.only and name not in args.only:
            if name in previous:
                results[name] = previous[name]
            continue
        results[name] = run_variant(name, config, args.work, real)
        results[name]["config"] = {k: config[k] for k in ("backbone",) if k in config} | {
            "encoders": {m: config["modalities"][m]["encoder"] for m in PATCH}
        }
        print(name, json.dumps({k: v for k, v in results[name].items() if k != "config"}),
              flush=True)  # fmt: skip
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
