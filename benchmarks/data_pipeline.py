"""The streamed data path at scale: throughput against a plain webdataset loop, and memory that
does not grow with the data.

    .venv/bin/python benchmarks/make_shards.py --n 200000 --out /tmp/anybind-shards/200k
    .venv/bin/python benchmarks/make_shards.py --n 50000 --out /tmp/anybind-shards/50k
    .venv/bin/python benchmarks/data_pipeline.py throughput --shards /tmp/anybind-shards/200k
    .venv/bin/python benchmarks/data_pipeline.py memory --shards /tmp/anybind-shards/50k \\
        /tmp/anybind-shards/200k --steps 300

throughput: batches of 256 decoded 64×64 RGB images + captions per second, from anybind's
training stream (`ShardStream` in a DataLoader with `--workers` workers: shard split, shuffle
buffer over raw bytes, decode, collate) and from a plain `webdataset.WebDataset` + `DataLoader`
loop decoding the same JPEGs to the same float tensors with the same shuffle buffer; both after
`--warmup` batches. Target: anybind ≥ 0.9× plain.

memory: `anybind train` on the shards (image CNN + byte-level text tower, batch 256, 2 workers)
for `--steps` steps in a fresh process per shard set, while a thread samples the memory of the
whole process tree (trainer + workers) every 0.25 s: the trainer's own RSS, the summed RSS
(counts pages the workers share with the trainer once per process, so it overstates) and the
summed PSS (shared pages split between the processes: the machine's real cost). Targets: peak
≤ 2 GB, and the peaks for 50,000 and 200,000 samples within 10% of each other.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "data_pipeline.json"
BATCH = 256


def anybind_loader(shards: Path, workers: int, buffer: int):
    from anybind.data.loader import LoaderSettings, batches
    from anybind.data.shards import ShardStream, read_index
    from anybind.data.shards.index import expand_urls
    from anybind.data.shards.stream import ShardSet, stream_loader
    from anybind.modalities import build_modality

    index = read_index(shards / "index.json")
    modalities = {
        "image": build_modality("image", {"size": (64, 64), "channels": 3}),
        "text": build_modality("text"),
    }
    sets = ShardSet(
        expand_urls(str(shards / "shard-*.tar")), modalities, index.class_names,
        samples=index.samples, samples_per_epoch=index.samples, shuffle_buffer=buffer,
    )  # fmt: skip
    stream = ShardStream(sets, batch_size=BATCH, seed=0, start=0, stop=10**9)
    return batches(stream_loader(stream, LoaderSettings(workers=workers)))


def plain_loader(shards: Path, workers: int, buffer: int):
    import webdataset as wds
    from PIL import Image

    def image(data: bytes) -> torch.Tensor:
        import io

        with Image.open(io.BytesIO(data)) as img:
            array = np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0
        return torch.from_numpy(array).permute(2, 0, 1).contiguous()

    def to_batch(samples: list[dict]) -> dict:
        return {
            "image": torch.stack([image(s["image.jpg"]) for s in samples]),
            "text": [s["text.txt"].decode() for s in samples],
            "label": torch.tensor([json.loads(s["json"])["label"] for s in samples]),
        }

    urls = sorted(str(p) for p in shards.glob("shard-*.tar"))
    dataset = (
        wds.WebDataset(urls, shardshuffle=False, nodesplitter=None, empty_check=False)
        .shuffle(buffer)
        .batched(BATCH, collation_fn=to_batch, partial=False)
    )
    return torch.utils.data.DataLoader(dataset, batch_size=None, num_workers=workers)


def rate(loader, batches: int, warmup: int) -> float:
    iterator = iter(loader)
    for _ in range(warmup):
        next(iterator)
    started = time.perf_counter()
    for _ in range(batches):
        batch = next(iterator)
        assert batch["image"].shape == (BATCH, 3, 64, 64)
    return batches * BATCH / (time.perf_counter() - started)


def throughput(args: argparse.Namespace) -> dict:
    """The two loops alternate, `--repeats` times each. Reported: the best run of each, and the
    statistics that one lucky run cannot move (the ratio of the medians, the median ratio of
    the alternating pairs)."""
    makers = {"plain_webdataset": plain_loader, "anybind": anybind_loader}
    runs: dict[str, list[float]] = {name: [] for name in makers}
    for _ in range(args.repeats):
        for name, make in makers.items():
            runs[name].append(rate(make(args.shards, args.workers, args.buffer), args.batches,
                                   args.warmup))  # fmt: skip
    out: dict = {name: {"samples_per_s": max(r), "runs": r} for name, r in runs.items()}
    for name, r in runs.items():
        print(f"{name}: {max(r):,.0f} samples/s (runs {[round(x) for x in r]})")
    out["ratio"] = out["anybind"]["samples_per_s"] / out["plain_webdataset"]["samples_per_s"]
    pairs = [a / p for a, p in zip(runs["anybind"], runs["plain_webdataset"], strict=True)]
    out["pair_ratios"] = pairs
    out["median_pair_ratio"] = statistics.median(pairs)
    out["ratio_of_medians"] = statistics.median(runs["anybind"]) / statistics.median(
        runs["plain_webdataset"]
    )
    print(f"anybind / plain = {out['ratio']:.3f} (best of each); ratio of the medians "
          f"{out['ratio_of_medians']:.3f}; median pair {out['median_pair_ratio']:.3f}")  # fmt: skip
    return out


def train_config(shards: Path, steps: int) -> dict:
    return {
        "modalities": {
            "image": {
                "options": {"size": [64, 64], "channels": 3},
                "encoder": {"type": "image_cnn", "width": 16, "stages": 3},
            },
            "text": {"encoder": {"type": "text_bytes", "width": 32, "layers": 1, "heads": 2}},
        },
        "space": {"dim": 64},
        "objective": {"pairs": "all", "positives": "caption"},
        "data": {
            "train": [{"type": "shards", "path": str(shards / "shard-*.tar")}],
            "workers": 2,
        },
        "optim": {"lr": 0.001, "steps": steps, "batch_size": BATCH, "warmup_steps": 10},
        "train": {"checkpoint_every": 10**6, "log_every": 50, "device": "cpu"},
    }


def tree_memory(pid: int) -> tuple[int, int, int]:
    """(summed RSS, summed PSS, the trainer's own RSS) of a process and its children."""
    import psutil

    root = psutil.Process(pid)
    rss = pss = own = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            info = proc.memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += getattr(info, "pss", info.rss)
        own = info.rss if proc.pid == pid else own
    return rss, pss, own


def memory_run(shards: Path, steps: int) -> dict:
    """Train in a child process; sample its tree's memory until it ends."""
    with tempfile.TemporaryDirectory() as tmp:
        import yaml

        config = Path(tmp) / "config.yaml"
        config.write_text(yaml.safe_dump(train_config(shards, steps)))
        anybind = Path(sys.executable).with_name("anybind")
        cmd = [str(anybind), "train", str(config), "--out", f"{tmp}/run", "--quiet"]
        started = time.perf_counter()
        child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        peak = {"rss": 0, "pss": 0, "own": 0}
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                for key, value in zip(peak, tree_memory(child.pid), strict=True):
                    peak[key] = max(peak[key], value)
                stop.wait(0.25)

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        output, _ = child.communicate()
        stop.set()
        watcher.join()
        if child.returncode != 0:
            raise SystemExit(f"training failed:\n{output[-3000:]}")
        summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
    return {
        "samples": summary["train_samples"],
        "steps": summary["steps"],
        "samples_per_s": summary["samples_per_s"],
        "peak_rss_gb": peak["rss"] / 1e9,
        "peak_pss_gb": peak["pss"] / 1e9,
        "peak_trainer_rss_gb": peak["own"] / 1e9,
        "wall_s": time.perf_counter() - started,
    }


def memory(args: argparse.Namespace) -> dict:
    runs = {}
    for shards in args.shards_sets:
        runs[shards.name] = memory_run(shards, args.steps)
        print(f"{shards.name}: {json.dumps(runs[shards.name])}")
    peaks = [r["peak_pss_gb"] for r in runs.values()]
    spread = (max(peaks) - min(peaks)) / min(peaks)
    print(f"peak PSS spread across data sizes: {100 * spread:.1f}%")
    return {"runs": runs, "pss_spread": spread}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("--shards", type=Path, required=True)
    t.add_argument("--workers", type=int, default=2)
    t.add_argument("--buffer", type=int, default=2000)
    t.add_argument("--batches", type=int, default=60)
    t.add_argument("--warmup", type=int, default=10)
    t.add_argument("--repeats", type=int, default=3)
    m = sub.add_parser("memory")
    m.add_argument("--shards", dest="shards_sets", type=Path, nargs="+", required=True)
    m.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    torch.set_num_threads(2)
    result = throughput(args) if args.what == "throughput" else memory(args)
    saved = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    saved[args.what] = {"args": {k: str(v) for k, v in vars(args).items()}, **result}
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2))


if __name__ == "__main__":
    main()
