"""Training-loop overhead: anybind's `train` vs a plain PyTorch loop on the same model and data.

    .venv/bin/python benchmarks/train_loop.py --steps 60

Both loops train the digits space (image CNN + audio window_pool over speech-embedding features +
frozen MiniLM anchor) on the same
in-memory batches, without augmentation, so that the only difference is what the recipe adds:
per-step seeding, progress bar, metrics.jsonl/TensorBoard, checkpoints. Throughput is measured
over the steps after a warm-up window of `log_every` steps: samples over the time they took (the
harmonic mean of the windows' rates), checkpoints and logging included. (Until 2026-12-02 it
was the median of the windows: with a checkpoint in 2 of anybind's 5 windows, that median was
the slowest of its 3 other windows, set against the middle one of the plain loop's 5, which
cost anybind about 5% that per-step times do not show.)
Target (DESIGN.md §6): anybind ≥ 0.95× the plain loop's samples/s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from anybind.config import load_config
from anybind.data.dataset import MultiModalDataset
from anybind.data.sample import Sample
from anybind.objectives import InfoNCE, group_ids
from anybind.recipes.demo import digits_config_path
from anybind.recipes.optim import param_groups
from anybind.recipes.train import train
from anybind.recipes.train_step import masked_captions
from anybind.space import Space

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def synthetic_dataset(space: Space, n: int, seed: int = 0) -> MultiModalDataset:
    rng = np.random.default_rng(seed)
    audio_shape = tuple(space.modalities["audio"].placeholder().shape)
    samples = []
    for i in range(n):
        y = int(rng.integers(10))
        if i % 2:
            values = {"image": torch.from_numpy(rng.random((1, 8, 8), dtype=np.float32))}
        else:
            values = {"audio": torch.from_numpy(rng.normal(0, 2, audio_shape).astype(np.float32))}
        values["text"] = f"the digit {NAMES[y]}"
        samples.append(Sample(values=values, label=y, id=str(i)))
    return MultiModalDataset(samples, space.modalities, NAMES)


def plain_loop(
    config, dataset: MultiModalDataset, steps: int, window: int, stamps: list[float]
) -> list[float]:
    """The reference: batch → forward → loss → backward → step, nothing else. Appends the end
    time of each step to `stamps`."""
    torch.manual_seed(0)
    space = Space(config)
    opt = torch.optim.AdamW(param_groups(space, config.optim.weight_decay), lr=config.optim.lr)
    objective = InfoNCE(config.pairs())
    bs, n = config.optim.batch_size, len(dataset)
    rates, tick = [], time.perf_counter()
    space.train()
    for step in range(steps):
        idx = torch.randperm(n)[:bs].tolist()
        batch = dataset.batch(idx)
        feats = space(batch)
        groups = group_ids(batch["label"], masked_captions(batch), config.objective.positives)
        masks = {k: batch[f"{k}_mask"] for k in feats}
        loss = sum(objective(feats, masks, groups, space.logit_scale()).values())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(space.parameters(), 1.0)
        opt.step()
        stamps.append(time.perf_counter())
        if (step + 1) % window == 0:
            now = time.perf_counter()
            rates.append(window * bs / (now - tick))
            tick = now
    return rates


def step_times(stamps: list[float], warmup: int) -> list[float]:
    """The duration of each step after the first `warmup`."""
    return [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :], strict=False)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--window", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="alternating pairs of runs")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/train_loop.json"))
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    overrides = [
        f"optim.steps={args.steps}",
        "optim.epochs=null",
        "optim.warmup_steps=5",
        "modalities.image.augment=false",
        "modalities.audio.augment=false",
        f"train.log_every={args.window}",
        "train.checkpoint_every=20",
    ]
    config = load_config(digits_config_path(), overrides)
    dataset = synthetic_dataset(Space(config), 4096)
    plains, ours = [], []
    steps: dict[str, list[float]] = {"plain": [], "anybind": []}

    def run_plain() -> None:  # the first window of each is dropped (allocator, caches)
        stamps: list[float] = []
        rates = plain_loop(config, dataset, args.steps, args.window, stamps)
        plains.append(statistics.harmonic_mean(rates[1:]))
        steps["plain"] += step_times(stamps, args.window)

    def run_ours() -> None:
        ended: list[float] = []
        with tempfile.TemporaryDirectory() as tmp:
            train(config, Path(tmp) / "run", dataset=dataset, progress=False,
                  after_step=lambda _, ended=ended: ended.append(time.perf_counter()))  # fmt: skip
            logged = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").open()]
        ours.append(statistics.harmonic_mean([m["samples_per_s"] for m in logged][1:]))
        steps["anybind"] += step_times(ended, args.window)

    # alternating pairs, so that a slow spell of the machine hits both, and each loop first in
    # every other pair, so that running second (warm caches, a busier allocator) favours neither
    for repeat in range(args.repeats):
        for run in (run_plain, run_ours) if repeat % 2 == 0 else (run_ours, run_plain):
            run()
    result = {
        "steps": args.steps,
        "batch_size": config.optim.batch_size,
        "threads": torch.get_num_threads(),
        "plain_samples_per_s": max(plains),
        "anybind_samples_per_s": max(ours),
        "plain_runs": plains,
        "anybind_runs": ours,
        "pair_ratios": [o / p for o, p in zip(ours, plains, strict=True)],
        "ratio_of_medians": statistics.median(ours) / statistics.median(plains),
        # the steady state: the median time of one step (log and checkpoint steps are outliers)
        "median_step_ms": {k: 1000 * statistics.median(v) for k, v in steps.items()},
    }
    result["step_time_ratio"] = statistics.median(steps["plain"]) / statistics.median(
        steps["anybind"]
    )
    result["ratio"] = result["anybind_samples_per_s"] / result["plain_samples_per_s"]
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
