"""Contrastive-loss memory and speed: dense (naive) vs tiled losses vs open_clip's losses.

    .venv/bin/python benchmarks/contrastive.py                      # CPU, fp32, N up to 16384
    .venv/bin/python benchmarks/contrastive.py --sizes 1024 8192    # a subset
    .venv/bin/python benchmarks/contrastive.py --gpu                # CUDA, bf16, N up to 262144

Every (method, N) runs in a FRESH subprocess on unit-norm random features (N, D) with gradients
for both sides and for the logit scale (and the SigLIP bias). Measured there:

* peak memory above the inputs: CPU — the process's VmHWM (/proc/self/status) after one
  forward+backward minus its resident size right after the inputs were made (the high-water
  mark is reset there through /proc/self/clear_refs when the kernel allows, otherwise the
  VmHWM at that point is the baseline); CUDA — torch.cuda.max_memory_allocated() after the run
  minus memory_allocated() after the inputs (peak stats reset there).
* time: the median of ≥3 timed forward+backward runs after that first (warm-up) run.
* the GEMM floor: the dense loss needs three (N×N×D) GEMMs — the logits, then dA and dB — so
  no exact method can beat 6·N²·D / rate, with rate the machine's torch.mm throughput, measured
  with a (min(N, 4096)×D)·(D×min(N, 4096)) mm right before each timed run (best of 3).
  time/floor is the median over the timed runs of run time / that run's floor, which cancels
  most of the drift from other work on a shared machine.

open_clip is an optional extra (`vision`) that pulls torchvision; when `import open_clip` fails,
its loss module alone (open_clip/loss.py needs only torch) is loaded from the package files if
they exist — found on sys.path or given with --open-clip-path DIR (the open_clip folder, e.g.
unpacked from the open_clip_torch wheel) — else the peer rows read "not installed".

Prints a Markdown table and writes benchmarks/results/contrastive.json (contrastive_gpu.json
with --gpu). Targets (N=8192, D=512, fp32 CPU): tiled peak above inputs ≤ 1/8 of the naive
loss's, and tiled time ≤ 2× the GEMM floor.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

METHODS = [
    "naive",
    "tiled",
    "open_clip.ClipLoss",
    "naive_sigmoid",
    "tiled_sigmoid",
    "open_clip.SigLipLoss",
]
RESULTS = Path(__file__).resolve().parent / "results"


# ------------------------------------------------------------------------------ worker side


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _load_open_clip_loss(path: str | None):
    """open_clip's loss module: the package if importable, else loss.py from its files."""
    try:
        from open_clip import loss  # noqa: PLC0415

        return loss, "open_clip (installed)"
    except Exception:  # noqa: BLE001 — any failure (missing torchvision, ABI) means "not usable"
        pass
    candidates = [Path(path) / "loss.py"] if path else []
    candidates += [Path(p) / "open_clip" / "loss.py" for p in sys.path if p]
    for file in candidates:
        if file.is_file():
            spec = importlib.util.spec_from_file_location("_open_clip_loss", file)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module, f"open_clip/loss.py only, from {file.parent}"
    return None, "not installed"


def _loss_fn(method: str, tile: int, open_clip_path: str | None):
    from anybind.objectives.infonce import info_nce
    from anybind.objectives.tiled import sigmoid_loss, tiled_info_nce, tiled_sigmoid_loss

    if method == "naive":
        return (lambda a, b, s, bias: info_nce(a, b, s)), "anybind info_nce"
    if method == "tiled":
        return (lambda a, b, s, bias: tiled_info_nce(a, b, s, tile=tile)), f"tile={tile}"
    if method == "naive_sigmoid":
        return (lambda a, b, s, bias: sigmoid_loss(a, b, s, bias)), "anybind sigmoid_loss"
    if method == "tiled_sigmoid":
        return (
            (lambda a, b, s, bias: tiled_sigmoid_loss(a, b, s, bias, tile=tile)),
            f"tile={tile}",
        )
    module, source = _load_open_clip_loss(open_clip_path)
    if module is None:
        return None, source
    if method == "open_clip.ClipLoss":
        clip = module.ClipLoss()
        return (lambda a, b, s, bias: clip(a, b, s)), source
    siglip = module.SigLipLoss()
    return (lambda a, b, s, bias: siglip(a, b, s, bias)), source


def worker(args: argparse.Namespace) -> dict:
    import torch

    cuda = args.device == "cuda"
    if args.threads:
        torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if cuda else torch.float32
    fn, source = _loss_fn(args.method, args.tile, args.open_clip_path)
    if fn is None:
        return {"status": "not installed", "source": source}
    n, d = args.n, args.dim
    side = min(n, 4096 if not cuda else 16384)
    gemm_x = torch.randn(side, d, device=args.device, dtype=dtype)
    gemm_y = torch.randn(side, d, device=args.device, dtype=dtype)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    def gemm_rate() -> float:
        best = float("inf")
        for _ in range(3):
            sync()
            t = time.perf_counter()
            gemm_x @ gemm_y.T
            sync()
            best = min(best, time.perf_counter() - t)
        return 2 * side * side * d / best

    gemm_rate()  # warm the BLAS up before the memory baseline
    gen = torch.Generator(device=args.device).manual_seed(0)
    a = (
        torch.nn.functional.normalize(torch.randn(n, d, generator=gen, device=args.device), dim=1)
        .to(dtype)
        .requires_grad_()
    )
    b = (
        torch.nn.functional.normalize(torch.randn(n, d, generator=gen, device=args.device), dim=1)
        .to(dtype)
        .requires_grad_()
    )
    scale = torch.tensor(args.scale, device=args.device, requires_grad=True)
    bias = torch.tensor(-10.0, device=args.device, requires_grad=True)

    def run() -> float:
        a.grad = b.grad = scale.grad = bias.grad = None
        loss = fn(a, b, scale, bias)
        loss.backward()
        return float(loss.detach())

    if cuda:
        sync()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        loss = run()
        sync()
        peak = torch.cuda.max_memory_allocated() - base
        hwm_reset = True
    else:
        hwm_reset = _reset_hwm()
        base = (_status_kib("VmRSS") if hwm_reset else _status_kib("VmHWM")) * 1024
        loss = run()
        peak = _status_kib("VmHWM") * 1024 - base
    times, rates, ratios = [], [], []
    for _ in range(args.repeats):
        rate = gemm_rate()
        sync()
        t = time.perf_counter()
        run()
        sync()
        elapsed = time.perf_counter() - t
        floor = 6 * n * n * d / rate
        times.append(elapsed)
        rates.append(rate)
        ratios.append(elapsed / floor)
    rate = statistics.median(rates)
    return {
        "status": "ok",
        "source": source,
        "loss": loss,
        "peak_above_inputs_bytes": peak,
        "hwm_reset": hwm_reset,
        "times_s": times,
        "time_s": statistics.median(times),
        "gemm_rate_flops": rate,
        "floor_s": 6 * n * n * d / rate,
        "time_over_floor": statistics.median(ratios),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


# ------------------------------------------------------------------------------ driver side


def _fmt_bytes(x: float | None) -> str:
    if x is None:
        return "—"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(x) >= size:
            return f"{x / size:.1f} {unit}"
    return f"{x:.0f} B"


def run_one(args: argparse.Namespace, method: str, n: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--worker",
        "--method",
        method,
        "--n",
        str(n),
        "--dim",
        str(args.dim),
        "--tile",
        str(args.tile),
        "--repeats",
        str(args.repeats),
        "--scale",
        str(args.scale),
        "--device",
        "cuda" if args.gpu else "cpu",
        "--threads",
        str(args.threads),
    ]
    if args.open_clip_path:
        cmd += ["--open-clip-path", args.open_clip_path]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"status": f"timeout > {args.timeout:.0f} s"}
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        oom = "out of memory" in proc.stderr.lower() or proc.returncode in (-9, 137)
        return {"status": "OOM" if oom else f"failed ({proc.returncode})", "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], device: str) -> str:
    lines = [
        f"| N | method | peak above inputs ({device}) | time fwd+bwd (s) | GEMM floor (s) "
        "| time/floor | loss |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["status"] != "ok":
            lines.append(f"| {r['n']} | {r['method']} | {r['status']} | | | | |")
            continue
        lines.append(
            f"| {r['n']} | {r['method']} | {_fmt_bytes(r['peak_above_inputs_bytes'])} "
            f"| {r['time_s']:.3f} | {r['floor_s']:.3f} | {r['time_over_floor']:.2f} "
            f"| {r['loss']:.5f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=None)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument(
        "--tile",
        type=int,
        default=None,
        help="tile of the tiled losses (default 1024 on CPU, 8192 on CUDA)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--scale", type=float, default=1 / 0.07)
    parser.add_argument("--methods", nargs="*", default=METHODS, choices=METHODS)
    parser.add_argument(
        "--threads", type=int, default=0, help="torch CPU threads in each run (0: torch's default)"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per subprocess")
    parser.add_argument(
        "--open-clip-path",
        default=None,
        help="folder holding open_clip's loss.py when open_clip is not installed",
    )
    parser.add_argument("--gpu", action="store_true", help="CUDA, bf16, N up to 262144")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--strict", action="store_true", help="exit 1 when any method fails, times out or OOMs"
    )
    # worker-only flags
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="tiled", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=1024, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.tile is None:
        args.tile = 8192 if args.gpu else 1024
    if args.repeats < 3:
        parser.error("--repeats must be ≥ 3 (the time is a median)")
    sizes = args.sizes or (
        [1024, 4096, 16384, 65536, 131072, 262144] if args.gpu else [1024, 2048, 4096, 8192, 16384]
    )
    rows = []
    for n in sizes:
        for method in args.methods:
            t = time.perf_counter()
            result = run_one(args, method, n)
            rows.append({"n": n, "method": method, **result})
            print(
                f"N={n:>6} {method:<22} {result['status']:<14} ({time.perf_counter() - t:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    device = "CUDA bf16" if args.gpu else "CPU fp32"
    print(table(rows, device))
    naive = {r["n"]: r for r in rows if r["method"] == "naive" and r["status"] == "ok"}
    targets = {}
    for r in rows:
        if r["method"] == "tiled" and r["status"] == "ok" and r["n"] in naive:
            memory_ratio = naive[r["n"]]["peak_above_inputs_bytes"] / max(
                r["peak_above_inputs_bytes"], 1
            )
            targets[str(r["n"])] = {
                "naive_over_tiled_memory": memory_ratio,
                "tiled_time_over_floor": r["time_over_floor"],
            }
    print(
        "\nnaive/tiled peak memory and tiled time/floor: "
        + ", ".join(
            f"N={k}: {v['naive_over_tiled_memory']:.1f}×, {v['tiled_time_over_floor']:.2f}"
            for k, v in targets.items()
        )
    )
    out = args.out or RESULTS / ("contrastive_gpu.json" if args.gpu else "contrastive.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "device": device,
                "dim": args.dim,
                "tile": args.tile,
                "repeats": args.repeats,
                "scale": args.scale,
                "cpu_count": os.cpu_count(),
                "threads": args.threads or "default",
                "rows": rows,
                "targets": targets,
            },
            indent=2,
        )
    )
    print(f"wrote {out}", file=sys.stderr)
    failed = [f"N={r['n']} {r['method']}: {r['status']}" for r in rows if r["status"] != "ok"]
    if args.strict and failed:
        sys.exit("not every method ran: " + "; ".join(failed))


if __name__ == "__main__":
    main()
