"""The built-in benchmark behind `make demo` / `anybind demo`.

Digits in three modalities, offline: scikit-learn's UCI 8×8 images, espeak-ng speech in many
voices (some held out), and text through frozen pretrained MiniLM as the anchor. Image and audio
are each bound to text, never to each other. Then: in-domain zero-shot and emergent image↔audio
retrieval on held-out data, and — when ../shared/data exists — the same model on real
handwriting (MNIST) and real recordings (FSDD), so the domain gap is visible.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from anybind.checkpoint import atomic_write_text
from anybind.config import load_config
from anybind.config.schema import Source
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.report import print_report
from anybind.recipes.train import train
from anybind.space import load_space

#: The bars of the core issue, checked and printed by the demo.
BARS = {
    "image zero-shot top-1 (held-out digits)": ("in_domain", "image_top1", 0.95),
    "audio zero-shot top-1 (held-out voices)": ("in_domain", "audio_top1", 0.85),
    "emergent image→audio R@1 (match = same digit)": ("in_domain", "image_to_audio_r1", 0.70),
}


def digits_config_path() -> Path:
    return Path(str(resources.files("anybind") / "configs" / "digits.yaml"))


def find_shared_data(explicit: str | Path | None = None) -> Path | None:
    candidates = [explicit, os.environ.get("ANYBIND_SHARED_DATA"), Path("../shared/data")]
    for c in candidates:
        if c and (Path(c) / "mnist").is_dir() and (Path(c) / "fsdd").is_dir():
            return Path(c).resolve()
    return None


def real_sources(shared: Path) -> dict[str, list[Source]]:
    from anybind.data.named import shared_targets

    return {"real": [source for source, _ in shared_targets(shared).values()]}


def headline(report: dict[str, Any]) -> dict[str, float]:
    out = {f"{m}_top1": r["top1"] for m, r in report["zero_shot"].items()}
    for pair, r in report["retrieval"].items():
        q, k = pair.split("->")
        out[f"{q}_to_{k}_r1"] = r["R@1"]
    return out


def check_bars(
    measured: dict[str, tuple[float, float]], console: Console
) -> dict[str, dict[str, Any]]:
    """Print each bar (label → (value, floor)) as met or not; the record for metrics.json."""
    bars = {}
    for label, (value, floor) in measured.items():
        bars[label] = {"value": value, "bar": floor, "met": bool(value >= floor)}
        mark = "[green]met[/]" if value >= floor else "[red]NOT met[/]"
        console.print(f"{label}: {100 * value:.1f}% (bar {100 * floor:.0f}%) {mark}")
    return bars


def run_demo(
    out: str | Path = "runs/demo",
    *,
    shared_data: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console()
    started = time.perf_counter()
    out = Path(out)
    if out.exists():
        shutil.rmtree(out)  # the demo's own folder: always a fresh, comparable run
    config = load_config(digits_config_path(), overrides)
    console.print("[bold]anybind demo[/]: binding digit images and speech to frozen MiniLM text")
    summary = train(config, out, progress=progress)
    space = load_space(out)
    reports = {
        "in-domain": evaluate_sources(space, config.data.eval, progress=progress, name="in-domain")
    }
    shared = find_shared_data(shared_data)
    for name, sources in (real_sources(shared) if shared else {}).items():
        reports[name] = evaluate_sources(space, sources, progress=progress, name=name)
    console.print(
        "in-domain: held-out UCI digits and held-out espeak-ng voices; real: MNIST "
        "(images) and FSDD (recordings), never seen in training"
    )
    print_report(reports, console)

    metrics: dict[str, Any] = {"in_domain": headline(reports["in-domain"])}
    if shared:
        metrics["real"] = headline(reports["real"])
    else:
        console.print(
            "[yellow]../shared/data not found: real MNIST/FSDD evaluation skipped "
            "(set ANYBIND_SHARED_DATA or pass --shared-data)[/]"
        )
    measured = {
        label: (metrics[group].get(key, float("nan")), floor)
        for label, (group, key, floor) in BARS.items()
    }
    bars = check_bars(measured, console)
    wall = time.perf_counter() - started
    result = {
        "metrics": metrics,
        "bars": bars,
        "train": asdict(summary),
        "wall_s": wall,
        "reports": reports,
        "shared_data": str(shared) if shared else None,
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    from anybind.recipes.html_report import build_report

    report = build_report(out, progress=progress)
    console.print(f"demo finished in {wall:.0f} s; wrote {out / 'metrics.json'} and {report}")
    return result
