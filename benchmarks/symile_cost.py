"""All-pairs CLIP vs Symile: cost ratio against M, the number of modalities.

    .venv/bin/python benchmarks/symile_cost.py --n 2048 --dim 512

All-pairs CLIP scores M(M−1)/2 pairs, one N×N logit GEMM each; Symile scores M anchors, one
N×N GEMM each (after an O(N·D) elementwise product of the non-anchor modalities). So the time
ratio CLIP / Symile should be about (M − 1)/2. Time is the median of `--repeats` forward+backward
passes (fp32, CPU). Target (objectives issue): within ±25% of (M − 1)/2 for M ∈ {2, 3, 4, 6}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from anybind.objectives import info_nce
from anybind.objectives.symile import symile_loss


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--ms", type=str, default="2,3,4,6", help="Comma list of M values.")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/symile_cost.json"))
    args = parser.parse_args()
    torch.manual_seed(0)
    rows = []
    for m in [int(x) for x in args.ms.split(",")]:
        feats = [
            F.normalize(torch.randn(args.n, args.dim), dim=1).requires_grad_() for _ in range(m)
        ]
        scale = torch.tensor(10.0)

        def clip(feats: list[torch.Tensor] = feats, scale: torch.Tensor = scale) -> None:
            loss = sum(info_nce(a, b, scale) for a, b in itertools.combinations(feats, 2))
            loss.backward()

        def symile(feats: list[torch.Tensor] = feats, scale: torch.Tensor = scale) -> None:
            symile_loss(feats, scale, negatives="n").backward()

        t_clip, t_symile = timed(clip, args.repeats), timed(symile, args.repeats)
        expected = (m - 1) / 2
        ratio = t_clip / t_symile
        rows.append(
            {
                "M": m,
                "clip_s": t_clip,
                "symile_s": t_symile,
                "ratio": ratio,
                "expected": expected,
                "within_25pct": abs(ratio / expected - 1) <= 0.25,
            }
        )
        print(
            f"M={m}: all-pairs CLIP {t_clip:.3f} s, Symile {t_symile:.3f} s, ratio "
            f"{ratio:.2f} (expected {expected:.2f})",
            flush=True,
        )
    result = {"n": args.n, "dim": args.dim, "threads": torch.get_num_threads(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
