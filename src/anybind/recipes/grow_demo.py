"""`anybind demo --grow` / `make demo-grow`: the digits space grown with three new modalities.

The base is the run of `anybind demo` (trained first when it is missing). `anybind extend` adds
pen trajectories (`timeseries`), point clouds of the extruded strokes (`pointcloud`) and videos
of the digit being drawn (`video`), all made from drawings of synthetic digits, each bound to
the frozen text tower only. Then: in-domain zero-shot and emergent retrieval against image and
audio (never trained together) on held-out drawings; and, when ../shared/data/pendigits exists,
real pen trajectories written by 30 people (never used for training): zero-shot, source-free
self-training on them, and emergent retrieval real pen → real FSDD recording of the same digit.
"""

from __future__ import annotations

import json
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from anybind.checkpoint import atomic_write_text
from anybind.config.schema import Source
from anybind.data.named import named_source
from anybind.recipes.demo import check_bars, find_shared_data, headline, run_demo
from anybind.recipes.evaluate import evaluate_sources
from anybind.recipes.extend import extend
from anybind.recipes.report import print_report
from anybind.run_status import read_status
from anybind.space import load_space

NEW = ("timeseries", "pointcloud", "video")


def grow_config_path() -> Path:
    return Path(str(resources.files("anybind") / "configs" / "grow-digits.yaml"))


def grow_bars(metrics: dict[str, dict[str, float]]) -> dict[str, tuple[float, float]]:
    """label → (value, bar) for the bars of the grow issue that the demo measures."""
    inside = metrics["in_domain"]
    bars = {}
    for m in NEW:
        bars[f"{m} zero-shot top-1 (held-out drawings)"] = (inside[f"{m}_top1"], 0.90)
        for other in ("image", "audio"):
            bars[f"emergent {m}→{other} R@1 (match = same digit)"] = (
                inside[f"{m}_to_{other}_r1"],
                0.70,
            )
    if "real" in metrics:
        bars["real pen zero-shot top-1 (pendigits)"] = (metrics["real"]["timeseries_top1"], 0.85)
    if "self_train" in metrics:
        bars["real pen after source-free self-train"] = (metrics["self_train"]["top1"], 0.95)
    return bars


def real_pen_sources(shared: Path) -> list[Source]:
    sources = [named_source("pendigits", shared / "pendigits" / "pendigits-train.csv")[0]]
    if (shared / "fsdd" / "recordings").is_dir():
        sources.append(named_source("fsdd", shared / "fsdd" / "recordings")[0])
    return sources


def run_grow_demo(
    out: str | Path = "runs/demo-grow",
    *,
    base: str | Path = "runs/demo",
    shared_data: str | Path | None = None,
    overrides: list[str] | None = None,
    progress: bool = True,
    console: Console | None = None,
    self_train_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`self_train_options`: options of the self-train method on the real pen trajectories
    (its defaults unless given)."""
    console = console or Console()
    started = time.perf_counter()
    out, base = Path(out), Path(base)
    if not read_status(base).complete:
        console.print(f"[bold]{base}[/] holds no finished demo run: training it first")
        run_demo(base, shared_data=shared_data, progress=progress, console=console)
    if out.exists():
        shutil.rmtree(out)  # the grow demo's own folder: always a fresh, comparable run
    console.print(
        f"[bold]anybind demo --grow[/]: extending {base} with pen trajectories, point clouds "
        "and videos, each bound to the frozen text tower only"
    )
    summary = extend(base, grow_config_path(), out, overrides=overrides, progress=progress)
    space = load_space(out)
    reports = {
        "in-domain": evaluate_sources(
            space, space.config.data.eval, progress=progress, name="in-domain"
        )
    }
    metrics: dict[str, Any] = {"in_domain": headline(reports["in-domain"])}
    shared = find_shared_data(shared_data)
    if shared is not None and (shared / "pendigits").is_dir():
        reports["real"] = evaluate_sources(
            space, real_pen_sources(shared), progress=progress, name="real"
        )
        metrics["real"] = headline(reports["real"])
        metrics["self_train"] = self_train_on_real_pen(out, shared, progress, self_train_options)
    console.print(
        "in-domain: held-out drawings, UCI digits and espeak-ng voices; real: UCI pendigits "
        "(pen trajectories of 30 writers) and FSDD recordings, never seen in training"
    )
    print_report(reports, console)
    if "self_train" in metrics:
        st = metrics["self_train"]
        console.print(
            f"source-free self-train on real pen trajectories: zero-shot "
            f"{100 * st['zero_shot_top1']:.1f}% → {100 * st['top1']:.1f}% on the held-out half"
        )
    bars = check_bars(grow_bars(metrics), console)
    wall = time.perf_counter() - started
    result = {
        "metrics": metrics,
        "bars": bars,
        "extend": {"wall_s": summary.wall_s, "steps": summary.steps},
        "wall_s": wall,
        "reports": reports,
        "base": str(base),
    }
    atomic_write_text(out / "metrics.json", json.dumps(result, indent=2))
    from anybind.recipes.html_report import build_report

    report = build_report(out, progress=progress)
    console.print(f"grow demo finished in {wall:.0f} s; wrote {out / 'metrics.json'} and {report}")
    return result


def self_train_on_real_pen(
    run: Path, shared: Path, progress: bool, options: dict[str, Any] | None = None
) -> dict[str, float]:
    """ReCLIP-style self-training on half of the real trajectories, scored on the other half."""
    from anybind.adapt.run import adapt_run
    from anybind.recipes.data import build_dataset

    space = load_space(run)
    source = named_source("pendigits", shared / "pendigits" / "pendigits-train.csv")[0]
    dataset, _ = build_dataset(
        [source], space.config, space.modalities, progress=False, cache="memory"
    )
    result = adapt_run(
        run,
        "self-train",
        dataset,  # type: ignore[arg-type]
        "timeseries",
        options=options,
        out=run / "adapters" / "pendigits-self-train",
        progress=progress,
        name="pendigits",
    )
    return {
        "zero_shot_top1": result["zero_shot"]["top1"],
        "top1": result["adapted"]["top1"],
        "n": result["adapted"].get("n", 0),
    }
