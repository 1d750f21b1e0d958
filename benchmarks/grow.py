"""Growing the demo space: extend vs retrain, single vs multi-anchor, from scratch vs a pretrained
encoder with LoRA. The numbers of docs/growing.md and BENCHMARKS.md ("Growing a space").

    .venv/bin/python benchmarks/grow.py --base runs/demo --json benchmarks/results/grow.json

Needs the demo run (`make demo`). Cases (each a fresh run folder under --work):

- `extend-pen`: `anybind extend` with the pen-trajectory tower only (text anchor);
- `retrain-pen`: the whole demo space trained again from scratch with the pen modality added
  (the demo's config and data plus the drawings, same epochs): what extending saves;
- `extend-pen-multi`: the pen tower bound to text and to each drawing's own image at once;
- `extend-video-scratch` / `extend-video-lora`: the video tower with its per-frame image encoder
  trained from scratch, or initialised from the base run's image encoder, frozen, with LoRA.

Wall times are of the whole call (data, model loading, training), in this process, one at a time.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import yaml

from anybind.config import load_config
from anybind.config.schema import DigitsSource
from anybind.recipes.demo import digits_config_path, find_shared_data, headline
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.extend import extend
from anybind.recipes.grow_demo import grow_config_path, real_pen_sources
from anybind.recipes.train import train
from anybind.space import load_space


def grow_config() -> dict[str, Any]:
    return yaml.safe_load(grow_config_path().read_text())


def only(modality: str, **changes: Any) -> dict[str, Any]:
    """The grow config with one new modality."""
    config = grow_config()
    config["modalities"] = {modality: config["modalities"][modality]}
    for split in ("train", "eval"):
        for source in config["data"][split]:
            keep = ["image", "audio"] if split == "eval" else []
            source["modalities"] = [*keep, modality]
    config["eval"]["templates"] = {modality: config["eval"]["templates"][modality]}
    config.update(changes)
    return config


def multi_anchor() -> dict[str, Any]:
    config = only("timeseries", anchors=["text", "image"])
    config["data"]["train"][0]["drawing_images"] = True
    return config


def video_lora() -> dict[str, Any]:
    config = only("video")
    config["modalities"]["video"].update(init_from="image", tuner={"type": "lora", "r": 8})
    return config


def retrain_config() -> Any:
    """The demo's config with the pen tower and the drawings added, trained from scratch."""
    base = load_config(digits_config_path()).model_dump(mode="json")
    pen = grow_config()
    raw = copy.deepcopy(base)
    raw["modalities"]["timeseries"] = pen["modalities"]["timeseries"]
    raw["data"]["train"].append(
        DigitsSource(modalities=["timeseries"], drawings_per_class=400).model_dump(mode="json")
    )
    raw["data"]["eval"][0]["modalities"] = ["image", "audio", "timeseries"]
    raw["data"]["eval"][0]["drawings_per_class"] = 100
    raw["eval"]["templates"]["timeseries"] = pen["eval"]["templates"]["timeseries"]
    from anybind.config import config_from_dict

    return config_from_dict(raw)


def measure(name: str, out: Path, run: Any, shared: Path | None) -> dict[str, Any]:
    started = time.perf_counter()
    summary = run(out)
    wall = time.perf_counter() - started
    space = load_space(out)
    trainable = sum(
        v.numel() for k, v in space.state_dict().items() if k in dict(space.named_parameters())
        and dict(space.named_parameters())[k].requires_grad
    )  # fmt: skip
    result: dict[str, Any] = {
        "wall_s": wall,
        "train_wall_s": summary.wall_s,
        "steps": summary.steps,
        "trainable_parameters": trainable,
        "in_domain": headline(evaluate_sources(space, space.config.data.eval, progress=False)),
    }
    if shared is not None and "timeseries" in space.towers:
        result["real"] = headline(evaluate_sources(space, real_pen_sources(shared), progress=False))
    print(name, json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, default=Path("runs/demo"))
    parser.add_argument("--work", type=Path, default=Path("runs/bench-grow"))
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--cases", nargs="*", default=None)
    args = parser.parse_args()
    shared = find_shared_data()
    if shared is not None and not (shared / "pendigits").is_dir():
        shared = None
    base = args.base

    def extending(config: dict[str, Any]) -> Any:
        return lambda out: extend(base, config, out, progress=False)

    cases = {
        "extend-pen": extending(only("timeseries")),
        "retrain-pen": lambda out: train(retrain_config(), out, progress=False),
        "extend-pen-multi": extending(multi_anchor()),
        "extend-video-scratch": extending(only("video")),
        "extend-video-lora": extending(video_lora()),
    }
    results = {}
    for name, run in cases.items():
        if args.cases and name not in args.cases:
            continue
        out = args.work / name
        if out.exists():
            import shutil

            shutil.rmtree(out)
        results[name] = measure(name, out, run, shared)
    if "extend-pen" in results and "retrain-pen" in results:
        ratio = results["extend-pen"]["wall_s"] / results["retrain-pen"]["wall_s"]
        results["extend_over_retrain"] = ratio
        print(f"extend / retrain wall time: {ratio:.3f} (bar ≤ 0.333)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
