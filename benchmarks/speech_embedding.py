"""Cost of the pretrained speech embedding (the demo's audio features) on this machine.

    .venv/bin/python benchmarks/speech_embedding.py --threads 2

Measures, for one-second 16 kHz clips: the network's forward pass at several batch sizes
(clips/s, ms per clip; the median of `--repeats` timed runs after a warm-up), the same with a
backward pass to the input of every convolution (what fine-tuning it inside a tower would pay per
step), and `AudioModality.load` with `representation: speech_embedding` clip by clip (what
loading a data set pays once). Writes benchmarks/results/speech_embedding.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import timeit
from pathlib import Path

import numpy as np
import torch

from anybind.modalities.audio import AudioModality, AudioOptions
from anybind.modalities.speech_model import shared_model

PACKAGE = "package:openwakeword/resources/models"


def timed(fn, repeats: int) -> float:
    """Median seconds of `repeats` calls after one warm-up call."""
    fn()
    return statistics.median(timeit.repeat(fn, number=1, repeat=repeats))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default="benchmarks/results/speech_embedding.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model = shared_model(PACKAGE)
    gen = torch.Generator().manual_seed(0)
    rows = []
    for batch in (1, 32, 256):
        waves = torch.randn(batch, 16000, generator=gen) * 0.1

        def forward(w: torch.Tensor = waves) -> None:
            with torch.no_grad():
                model(w)

        seconds = timed(forward, args.repeats)
        rows.append(
            {
                "pass": "forward",
                "batch": batch,
                "clips_per_s": batch / seconds,
                "ms_per_clip": 1000 * seconds / batch,
            }
        )
        print(rows[-1], flush=True)
    trainable = model.network.requires_grad_(True)
    waves = torch.randn(64, 16000, generator=gen) * 0.1

    def forward_backward() -> None:
        trainable.zero_grad()
        model(waves).sum().backward()

    seconds = timed(forward_backward, args.repeats)
    model.network.requires_grad_(False)
    rows.append(
        {
            "pass": "forward+backward",
            "batch": 64,
            "clips_per_s": 64 / seconds,
            "ms_per_clip": 1000 * seconds / 64,
        }
    )
    print(rows[-1], flush=True)
    audio = AudioModality(AudioOptions(sample_rate=16000, representation="speech_embedding"))
    rng = np.random.default_rng(0)
    clips = [(0.1 * rng.standard_normal(8000)).astype(np.float32) for _ in range(64)]

    def load_all() -> None:
        for clip in clips:
            audio.load({"waveform": clip, "sample_rate": 8000})

    seconds = timed(load_all, max(1, args.repeats // 2))
    rows.append(
        {
            "pass": "AudioModality.load (8 kHz clip → 16 kHz → features)",
            "batch": 1,
            "clips_per_s": len(clips) / seconds,
            "ms_per_clip": 1000 * seconds / len(clips),
        }
    )
    print(rows[-1], flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
