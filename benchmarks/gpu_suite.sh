#!/usr/bin/env bash
# The prepared GPU suite (one NVIDIA GPU, ≤ 8 minutes): run it whenever a GPU machine is at hand
# and record the numbers in BENCHMARKS.md.
#
#   bash benchmarks/gpu_suite.sh            # sets up .venv if needed (CUDA torch must be present)
#   bash benchmarks/gpu_suite.sh --check [DIR]  # the same two steps at tiny sizes on CPU, results
#                                   # in DIR (a test runs this, so the suite cannot rot unrun)
#
# 1. contrastive losses at N = 65,536, D = 512, bf16: tiled vs dense vs the GEMM floor
#    (goal: tiled ≤ 1.5× the floor and ≤ 1 GB above the inputs)
# 2. training samples/s, ViT-S/16 image tower + MiniLM-sized text tower from random init,
#    anybind's loop vs a plain loop on the same model and batches (bf16 autocast)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
METHODS="naive tiled naive_sigmoid tiled_sigmoid"
if [ "${1:-}" = "--check" ]; then
    OUT=${2:-$(mktemp -d)}
    timeout 120 "$PY" benchmarks/contrastive.py --sizes 256 --dim 32 --methods $METHODS \
        --repeats 3 --timeout 60 --strict --out "$OUT/contrastive.json"
    timeout 120 "$PY" benchmarks/gpu_train.py --smoke --out "$OUT/train.json"
    echo "check passed; results in $OUT"
    exit 0
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name())"
mkdir -p benchmarks/results
timeout 300 "$PY" benchmarks/contrastive.py --gpu --sizes 65536 --dim 512 \
    --methods $METHODS --repeats 3 --timeout 120 \
    | tee benchmarks/results/gpu_suite_contrastive.txt
timeout 170 "$PY" benchmarks/gpu_train.py --device cuda --steps 60 --warmup 15 --batch-size 256 \
    | tee benchmarks/results/gpu_suite_train.txt
