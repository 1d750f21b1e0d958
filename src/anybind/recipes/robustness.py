"""`anybind eval RUN --robustness`: accuracy with modalities missing and corrupted.

Two parts, both zero-shot top-1 on the evaluation data:

- **subsets** (runs with a fusion module): the joint embedding from every non-empty subset of the
  fused modalities (the others removed from every sample);
- **corruptions**: each modality of the data under each corruption of its kind
  (`anybind.evaluate.corruptions`) at increasing levels, scored for that modality and, when it
  is fused, for the joint embedding. Per curve: the accuracies, MultiBench's relative
  robustness (the area under the curve over the level range) and, for the joint embedding,
  its effective robustness against the corrupted modality's own curve (how much more slowly
  fusion degrades than the modality alone, beyond its clean gain).

The data are decoded once; a corrupted copy is made per (modality, corruption, level) with a
generator seeded by (seed, modality, corruption, level), so the report is a pure function of the
data, the run and the seed.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

import numpy as np

from anybind.config.schema import Source
from anybind.data.dataset import MultiModalDataset
from anybind.data.loader import materialize
from anybind.data.sample import Sample
from anybind.errors import AnybindError
from anybind.evaluate.corruptions import area_under, effective_robustness, for_kind
from anybind.progress import progress_bar
from anybind.recipes.data import source_dataset
from anybind.recipes.evaluate import evaluate_space
from anybind.space import Space

LEVELS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def robustness(
    space: Space,
    sources: list[Source],
    *,
    levels: tuple[float, ...] = LEVELS,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    lazy = source_dataset(sources, space.config, space.modalities, progress=progress)
    for modality in space.modalities.values():
        modality.use_feature_cache(None)  # corrupted clips would only fill the cache
    clean, _ = materialize(lazy, progress=progress, description="loading robustness data")
    if [s.id for s in clean.samples] != [r.id for r in lazy.records]:
        raise AnybindError("robustness: samples and records are out of step")
    fusion = space.config.fusion
    report: dict[str, Any] = {"levels": list(levels), "seed": seed, "samples": len(clean)}
    if fusion is not None:
        report["subsets"] = subset_scores(space, clean, fusion.modalities, fusion.name)
    present = [m for m in space.towers if bool(clean.has(m).any())]
    plan = [(m, name, c) for m in present
            for name, c in for_kind(space.towers[m].modality.name).items()]  # fmt: skip
    report["corruptions"] = {}
    with progress_bar("evaluations", disable=not progress) as bar:
        task = bar.add_task("corrupting", total=len(plan) * len(levels))
        for m, name, c in plan:
            curves: dict[str, list[float]] = {}
            for i, level in enumerate(levels):
                rng = np.random.default_rng((seed, zlib.crc32(f"{m}/{name}".encode()), i))
                data = corrupted(clean, lazy.records, space, m, c, level, rng)
                scores = evaluate_space(space, data, progress=False)["zero_shot"]
                for target in (m, fusion.name if fusion and m in fusion.modalities else None):
                    if target and target in scores:
                        curves.setdefault(target, []).append(scores[target]["top1"])
                bar.advance(task)
            report["corruptions"].setdefault(m, {})[name] = summarise(curves, m, list(levels))
    return report


def subset_scores(
    space: Space, clean: MultiModalDataset, fused: list[str], joint: str
) -> dict[str, float]:
    """Joint top-1 from each non-empty subset of the fused modalities."""
    out = {}
    for k in range(1, len(fused) + 1):
        for subset in itertools.combinations(fused, k):
            drop = set(fused) - set(subset)
            samples = [
                Sample({m: v for m, v in s.values.items() if m not in drop}, s.label, s.id)
                for s in clean.samples
            ]
            samples = [s for s in samples if any(m in s.values for m in subset)]
            data = MultiModalDataset(samples, clean.modalities, clean.class_names)
            scores = evaluate_space(space, data, progress=False)["zero_shot"]
            if joint in scores:
                out["+".join(subset)] = scores[joint]["top1"]
    return out


def corrupted(
    clean: MultiModalDataset,
    records: list,
    space: Space,
    m: str,
    c: Any,
    level: float,
    rng: np.random.Generator,
) -> MultiModalDataset:
    """A copy of the decoded data with modality `m` of every sample corrupted."""
    if level == 0:
        return clean
    modality = space.towers[m].modality
    samples = []
    for sample, record in zip(clean.samples, records, strict=True):
        values = dict(sample.values)
        if m in values:
            if c.stage == "raw":  # audio: corrupt the waveform, then compute the features
                wave = modality.waveform(record.values[m], source=record.source)  # type: ignore[attr-defined]
                rate = modality.options.sample_rate  # type: ignore[attr-defined]
                raw = {"waveform": c.apply(wave, level, rng), "sample_rate": rate}
                values[m] = modality.load(raw, source=record.source)
            else:
                values[m] = c.apply(values[m], level, rng)
        samples.append(Sample(values, sample.label, sample.id, sample.meta))
    return MultiModalDataset(samples, clean.modalities, clean.class_names)


def summarise(curves: dict[str, list[float]], m: str, levels: list[float]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for target, curve in curves.items():
        entry: dict[str, Any] = {"top1": curve, "relative_robustness": area_under(levels, curve)}
        if target != m and m in curves:
            entry["effective_robustness"] = effective_robustness(curve, curves[m])
        out[target] = entry
    return out
