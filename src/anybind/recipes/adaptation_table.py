"""The adaptation table: every method × every target domain, under the issue's protocols.

- few-shot: K ∈ shots per class × seeds, mean ± std of top-1 on the held-out evaluation part;
- label-free: self-train and tent, × seeds;
- base-to-novel: 16 shots of the base classes (the first ceil(C/2)), each half scored over its own
  classes, harmonic mean of the seed-averaged accuracies;
every row beside the zero-shot top-1 of the same space on the same evaluation part. Each run starts
from a fresh copy of the base space. Results go to JSON (every run) and to a Markdown section that
replaces the generated part of docs/adaptation.md.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from anybind.adapt.base import make_context
from anybind.adapt.protocols import base_novel_split, harmonic_mean, mean_std
from anybind.adapt.run import TargetDomain, adapt_space, score
from anybind.checkpoint import atomic_write_text
from anybind.data.named import shared_targets
from anybind.recipes.data import build_dataset
from anybind.space import Space, load_space

FEW_SHOT = ["linear-probe", "cross-modal-probe", "lora", "ia3", "adapter", "prompt", "self-train"]
LABEL_FREE = ["self-train", "tent"]
BASE_NOVEL = ["linear-probe", "cross-modal-probe", "lora", "prompt"]
#: per-domain method options (documented in docs/adaptation.md): image self-training uses the
#: image augmentations; the audio ones (built to make synthetic speech speaker-robust) hurt it
DOMAIN_OPTIONS: dict[str, dict[str, dict[str, Any]]] = {
    "mnist": {"self-train": {"augment": True}},
    "fsdd": {},
}
MARK_START = "<!-- adaptation-table:start -->"
MARK_END = "<!-- adaptation-table:end -->"


def run_one(
    base: Space,
    domain: TargetDomain,
    method: str,
    *,
    shots: int | None,
    seed: int,
    options: dict[str, Any],
    classes: list[int] | None = None,
    novel: list[int] | None = None,
) -> dict[str, Any]:
    space = copy.deepcopy(base)
    adaptation, record = adapt_space(
        space, domain, method, shots=shots, seed=seed, options=options, classes=classes
    )
    ctx = make_context(space, domain.modality)
    record["top1"] = score(space, ctx, adaptation, domain, classes)["top1"]
    if novel is not None:
        record["novel_top1"] = score(space, ctx, adaptation, domain, novel)["top1"]
    return record


def build_table(
    run_dir: str | Path,
    shared: str | Path,
    *,
    domains: list[str] | None = None,
    shots: list[int] | None = None,
    seeds: list[int] | None = None,
    few_shot: list[str] | None = None,
    label_free: list[str] | None = None,
    base_novel: list[str] | None = None,
    base_novel_shots: int = 16,
    console: Console | None = None,
) -> dict[str, Any]:
    console = console or Console()
    shots = shots or [1, 2, 4, 8, 16]
    seeds = seeds or [1, 2, 3]
    few_shot = FEW_SHOT if few_shot is None else few_shot
    label_free = LABEL_FREE if label_free is None else label_free
    base_novel = BASE_NOVEL if base_novel is None else base_novel
    base = load_space(run_dir)
    targets = shared_targets(Path(shared))
    out: dict[str, Any] = {"run": str(run_dir), "shots": shots, "seeds": seeds, "domains": {}}
    started = time.perf_counter()
    for name in domains or list(targets):
        source, modality = targets[name]
        domain, d, base_cls, novel_cls = zero_shot_row(base, name, source, modality)
        out["domains"][name] = d
        console.print(f"[bold]{name}[/] ({modality}): zero-shot {100 * d['zero_shot']:.1f}%")
        opts = d["options"]
        for method in label_free:
            runs = [
                run_one(base, domain, method, shots=None, seed=s, options=opts.get(method, {}))
                for s in seeds
            ]
            d["label_free"][method] = runs
            console.print(f"  {method} (no labels): {_fmt([r['top1'] for r in runs])}")
        for method in few_shot:
            d["few_shot"][method] = {}
            for k in shots:
                runs = [
                    run_one(base, domain, method, shots=k, seed=s, options=opts.get(method, {}))
                    for s in seeds
                ]
                d["few_shot"][method][str(k)] = runs
                console.print(f"  {method} {k}-shot: {_fmt([r['top1'] for r in runs])}")
        for method in base_novel:
            d["base_novel"][method] = base_to_novel(
                base, domain, method, base_novel_shots, seeds, opts.get(method, {}),
                base_cls, novel_cls,
            )  # fmt: skip
            row = d["base_novel"][method]
            console.print(
                f"  {method} base→novel: base {100 * row['base']:.1f} "
                f"novel {100 * row['novel']:.1f}"
            )
    out["wall_s"] = time.perf_counter() - started
    return out


def zero_shot_row(
    base: Space, name: str, source: Any, modality: str
) -> tuple[TargetDomain, dict[str, Any], list[int], list[int]]:
    """A target domain split for adaptation, its zero-shot scores (all, base and novel classes)
    as the row the protocols fill in, and its base and novel classes."""
    dataset, _ = build_dataset(
        [source], base.config, base.modalities, progress=False, cache="memory"
    )
    domain = TargetDomain.build(name, dataset, modality)
    ctx = make_context(base, modality)
    base_cls, novel_cls = base_novel_split(len(ctx.class_names))
    row: dict[str, Any] = {
        "modality": modality,
        "split": domain.split_record(),
        "zero_shot": score(base, ctx, None, domain)["top1"],
        "zero_shot_base": score(base, ctx, None, domain, base_cls)["top1"],
        "zero_shot_novel": score(base, ctx, None, domain, novel_cls)["top1"],
        "options": DOMAIN_OPTIONS.get(name, {}),
        "few_shot": {},
        "label_free": {},
        "base_novel": {},
    }
    return domain, row, base_cls, novel_cls


def base_to_novel(
    base: Space,
    domain: TargetDomain,
    method: str,
    shots: int,
    seeds: list[int],
    options: dict[str, Any],
    base_cls: list[int],
    novel_cls: list[int],
) -> dict[str, Any]:
    """CoCoOp's protocol: adapt on the base classes' shots, score base and novel classes."""
    runs = [
        run_one(base, domain, method, shots=shots, seed=s, options=options,
                classes=base_cls, novel=novel_cls)
        for s in seeds
    ]  # fmt: skip
    b = mean_std([r["top1"] for r in runs])[0]
    n = mean_std([r["novel_top1"] for r in runs])[0]
    return {"runs": runs, "base": b, "novel": n}


def _fmt(values: list[float]) -> str:
    m, s = mean_std(values)
    return f"{100 * m:.1f} ± {100 * s:.1f}"


def markdown(table: dict[str, Any], command: str) -> str:
    lines = [MARK_START, "", f"Generated by `{command}` in {table['wall_s'] / 60:.0f} min.", ""]
    for name, d in table["domains"].items():
        shots = table["shots"]
        zs = 100 * d["zero_shot"]
        lines += [
            f"### {name} ({d['modality']}): zero-shot {zs:.1f}%",
            "",
            f"Adaptation part {d['split']['adapt_samples']} samples, evaluation part "
            f"{d['split']['eval_samples']} (disjoint; split seed {d['split']['split_seed']}). "
            f"Top-1 % on the evaluation part, mean ± std over seeds {table['seeds']}.",
            "",
            "| method | labels | " + " | ".join(f"{k}-shot" for k in shots) + " |",
            "|---|---|" + "---|" * len(shots),
        ]
        for method, runs in d["label_free"].items():
            cell = _fmt([r["top1"] for r in runs])
            lines.append(
                f"| {method} | none | {cell} (Δ {_delta(runs, zs)}) |" + " |" * (len(shots) - 1)
            )
        for method, per_k in d["few_shot"].items():
            kind = "K shots + unlabelled rest" if method == "self-train" else "K shots"
            cells = [_fmt([r["top1"] for r in per_k[str(k)]]) for k in shots]
            lines.append(f"| {method} | {kind} | " + " | ".join(cells) + " |")
        if d["base_novel"]:
            zb, zn = 100 * d["zero_shot_base"], 100 * d["zero_shot_novel"]
            lines += [
                "",
                "Base-to-novel (16 shots of the base classes; each half scored over its own "
                "classes):",
                "",
                "| method | base | novel | HM |",
                "|---|---|---|---|",
                f"| zero-shot | {zb:.1f} | {zn:.1f} | {harmonic_mean(zb, zn):.1f} |",
            ]
            for method, r in d["base_novel"].items():
                b, n = 100 * r["base"], 100 * r["novel"]
                lines.append(f"| {method} | {b:.1f} | {n:.1f} | {harmonic_mean(b, n):.1f} |")
        lines.append("")
    lines.append(MARK_END)
    return "\n".join(lines)


def _delta(runs: list[dict[str, Any]], zero_shot_pct: float) -> str:
    m = 100 * mean_std([r["top1"] for r in runs])[0]
    return f"{m - zero_shot_pct:+.1f}"


def write_markdown(doc: Path, section: str) -> None:
    """Replace the generated section of `doc` (between the markers), or append it."""
    text = doc.read_text() if doc.is_file() else ""
    if MARK_START in text and MARK_END in text:
        head, rest = text.split(MARK_START, 1)
        _, tail = rest.split(MARK_END, 1)
        text = head + section + tail
    else:
        text = text + ("\n" if text else "") + section + "\n"
    atomic_write_text(doc, text)


def write_json(table: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(table, indent=2, default=str))
