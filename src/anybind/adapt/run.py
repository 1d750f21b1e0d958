"""Adapt a run folder to target data and score it: the engine of `anybind adapt` and its twin
`anybind.adapt.run.adapt_run`.

The target data is split once (seeded, stratified) into an adaptation part and an evaluation
part. Label-free methods get an `UnlabelledView` of the adaptation part; few-shot methods get K
labelled samples per class drawn from it. Both the zero-shot baseline of the unchanged space and
the adapted space are scored on the evaluation part, which no method ever sees.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from anybind.adapt import build_method
from anybind.adapt.base import Adaptation, AdaptContext, make_context
from anybind.adapt.features import embed_data, embed_inputs
from anybind.adapt.protocols import adapt_eval_split, few_shot_indices, ids_digest
from anybind.adapt.store import save_adaptation
from anybind.adapt.views import UnlabelledView, modality_tensor, subset
from anybind.checkpoint import WEIGHTS, atomic_write_text, file_sha256
from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError
from anybind.evaluate.zero_shot import zero_shot
from anybind.space import Space, load_space


@dataclass
class TargetDomain:
    """Target data of one modality, split into adaptation and evaluation parts."""

    name: str
    dataset: MultiModalDataset
    modality: str
    adapt_idx: Any
    eval_idx: Any
    eval_fraction: float
    split_seed: int
    #: the towers `modality` is computed from, when it is derived (a fusion's joint embedding)
    inputs: list[str] | None = None
    _eval_inputs: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def build(
        cls,
        name: str,
        dataset: MultiModalDataset,
        modality: str,
        *,
        eval_fraction: float = 0.5,
        split_seed: int = 0,
        inputs: list[str] | None = None,
    ) -> TargetDomain:
        """`inputs`: for a derived modality, the towers it is computed from (a sample holding
        any of them takes part)."""
        has = torch.stack([dataset.has(m) for m in inputs or [modality]]).any(dim=0)
        if not bool(has.all()):  # a manifest of several modalities: the rows holding this one
            dataset = dataset.subset(torch.nonzero(has).flatten().tolist())
        labels = dataset.labels()
        if bool((labels < 0).any()):
            raise AnybindError(
                f"{name}: {int((labels < 0).sum())} target samples have no label; the evaluation "
                "part needs labels (label-free methods never see them)"
            )
        adapt, evaluate = adapt_eval_split(
            len(dataset), labels, eval_fraction=eval_fraction, seed=split_seed
        )
        return cls(name, dataset, modality, adapt, evaluate, eval_fraction, split_seed, inputs)

    @property
    def adapt_part(self) -> MultiModalDataset:
        return subset(self.dataset, self.adapt_idx.tolist())

    @property
    def eval_part(self) -> MultiModalDataset:
        return subset(self.dataset, self.eval_idx.tolist())

    @property
    def eval_inputs(self) -> torch.Tensor:
        if self._eval_inputs is None:
            self._eval_inputs = modality_tensor(self.eval_part, self.modality)
        return self._eval_inputs

    def eval_embeddings(self, space: Space) -> torch.Tensor:
        """(N, D) embeddings of the evaluation part (decoded inputs are kept between calls)."""
        if self.inputs is not None:
            return embed_data(space, self.eval_part, self.modality)[0]
        return embed_inputs(space.towers[self.modality], self.eval_inputs)

    def split_record(self) -> dict[str, Any]:
        ids = [s.id for s in self.dataset.samples]
        adapt_ids = [ids[i] for i in self.adapt_idx]
        eval_ids = [ids[i] for i in self.eval_idx]
        return {
            "adapt_samples": len(adapt_ids),
            "eval_samples": len(eval_ids),
            "eval_fraction": self.eval_fraction,
            "split_seed": self.split_seed,
            "adapt_ids_sha256": ids_digest(adapt_ids),
            "eval_ids_sha256": ids_digest(eval_ids),
            "overlap": len(set(adapt_ids) & set(eval_ids)),
        }


def target_modality(space: Space, dataset: MultiModalDataset, requested: str | None = None) -> str:
    """The modality to adapt: `requested`, or the one non-text modality of the space that the
    target data holds (with several, the caller must choose)."""
    present = [
        m
        for m, t in space.towers.items()
        if t.modality.name != "text" and bool(dataset.has(m).any())
    ]
    if requested is not None and requested in space.derived_names():
        inputs = space.derived_inputs(requested)
        if not any(bool(dataset.has(m).any()) for m in inputs):
            raise AnybindError(
                f"--modality {requested}: the target data holds none of {', '.join(inputs)}"
            )
        return requested
    if requested is not None:
        if requested not in space.towers:
            known = ", ".join([*space.towers, *space.derived_names()])
            raise AnybindError(f"--modality {requested}: the space has no such modality ({known})")
        if requested not in present:
            raise AnybindError(
                f"--modality {requested}: the target data holds none (it holds {present})"
            )
        return requested
    if not present:
        raise AnybindError("the target data holds no modality of the space besides text")
    if len(present) > 1:
        raise AnybindError(
            f"the target data holds {' and '.join(present)}: pass --modality to pick the one "
            "to adapt"
        )
    return present[0]


def score(
    space: Space,
    ctx: AdaptContext,
    adaptation: Adaptation | None,
    domain: TargetDomain,
    classes: list[int] | None = None,
) -> dict[str, Any]:
    """Top-1 etc. on the evaluation part, over `classes` only (default all), zero-shot when
    `adaptation` is None."""
    labels = domain.eval_part.labels()
    emb = domain.eval_embeddings(space)
    names = ctx.class_names if classes is None else [ctx.class_names[c] for c in classes]
    if adaptation is None:
        with torch.no_grad():
            weights = ctx.class_embeddings(names).cpu()
    else:
        weights = adaptation.classifier(ctx, names)
    if classes is not None:
        keep = torch.isin(labels, torch.tensor(classes))
        emb, labels = emb[keep], labels[keep]
        labels = torch.searchsorted(torch.tensor(sorted(classes)), labels)
        order = sorted(range(len(classes)), key=lambda i: classes[i])
        weights, names = weights[order], [names[i] for i in order]
    report = zero_shot(emb, labels, weights, names)
    report.pop("confusion", None)
    return report


def adapt_space(
    space: Space,
    domain: TargetDomain,
    method: str,
    *,
    shots: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    classes: list[int] | None = None,
    progress: bool = False,
) -> tuple[Adaptation, dict[str, Any]]:
    """Run one method on `domain`'s adaptation part (in place on `space`)."""
    algo = build_method(method, options)
    if domain.inputs is not None and not algo.over_embeddings:
        raise AnybindError(
            f"'{method}' tunes a tower; '{domain.modality}' is computed from "
            f"{', '.join(domain.inputs)}: adapt it with linear-probe or cross-modal-probe"
        )
    ctx = make_context(space, domain.modality, seed=seed, progress=progress)
    part = domain.adapt_part
    record: dict[str, Any] = {"method": method, "seed": seed}
    labelled = None
    if algo.accepts_shots and shots:
        # semi-supervised: K labelled shots, and the rest of the adaptation part without labels
        idx = few_shot_indices(part.labels(), shots, seed, classes)
        labelled = subset(part, idx.tolist())
        rest = sorted(set(range(len(part))) - set(idx.tolist()))
        data = UnlabelledView(subset(part, rest))
        record.update(shots=shots, train_samples=len(part), labels_seen=len(idx))
    elif algo.needs_labels:
        if shots is None:
            raise AnybindError(f"'{method}' is a few-shot method: pass --shots K")
        idx = few_shot_indices(part.labels(), shots, seed, classes)
        data = subset(part, idx.tolist())
        record.update(shots=shots, train_samples=len(idx))
    else:
        data = UnlabelledView(part)  # label-free: the view refuses to give labels
        record.update(shots=0, train_samples=len(data), labels_seen=False)
    if classes is not None:
        ctx.class_names = [ctx.class_names[c] for c in classes]
        if algo.needs_labels:
            data = relabel(data, classes, ctx.class_names)
        if labelled is not None:
            labelled = relabel(labelled, classes, ctx.class_names)
    torch.manual_seed(seed)
    started = time.perf_counter()
    adaptation = algo.adapt(ctx, data, labelled)
    record["adapt_seconds"] = time.perf_counter() - started
    return adaptation, record


def relabel(data: MultiModalDataset, classes: list[int], names: list[str]) -> MultiModalDataset:
    """Samples of `classes` relabelled 0..len(classes)-1 (a class subset, e.g. base classes)."""
    remap = {c: i for i, c in enumerate(classes)}
    samples = [copy.copy(s) for s in data.samples]
    for s in samples:
        s.label = remap[s.label]
    return MultiModalDataset(samples, data.modalities, names)


def adapt_run(
    run_dir: str | Path,
    method: str,
    dataset: MultiModalDataset,
    modality: str,
    *,
    shots: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    eval_fraction: float = 0.5,
    split_seed: int = 0,
    progress: bool = True,
    name: str = "target",
) -> dict[str, Any]:
    """Adapt the run's space to `dataset` with `method`, save the adapter to `out`, and return
    zero-shot and adapted scores on the held-out evaluation part."""
    run_dir = Path(run_dir)
    base_sha = file_sha256(run_dir / WEIGHTS)
    space = load_space(run_dir)
    inputs = space.derived_inputs(modality) if modality in space.derived_names() else None
    domain = TargetDomain.build(
        name, dataset, modality, eval_fraction=eval_fraction, split_seed=split_seed,
        inputs=inputs,
    )  # fmt: skip
    ctx = make_context(space, modality)
    baseline = score(space, ctx, None, domain)
    adaptation, record = adapt_space(
        space, domain, method, shots=shots, seed=seed, options=options, progress=progress
    )
    adapted = score(space, make_context(space, modality), adaptation, domain)
    result = {
        **record,
        "run": str(run_dir),
        "target": name,
        "modality": modality,
        "options": adaptation.options,
        "split": domain.split_record(),
        "zero_shot": baseline,
        "adapted": adapted,
        "delta_top1": adapted["top1"] - baseline["top1"],
        "info": adaptation.info,
    }
    if out is not None:
        ids = [domain.dataset.samples[i].id for i in domain.adapt_idx]
        save_adaptation(adaptation, out, run_dir, extra={"split": result["split"]}, adapt_ids=ids)
        result["adapter"] = str(out)
        # the scores beside the adapter, for `anybind report` and for comparing adapters later
        atomic_write_text(Path(out) / "result.json", json.dumps(result, indent=2, default=str))
    if file_sha256(run_dir / WEIGHTS) != base_sha:
        raise AnybindError(f"{run_dir / WEIGHTS} changed during adaptation")  # never expected
    return result
