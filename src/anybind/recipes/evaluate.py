"""Measure a space: `anybind eval RUN_DIR --data … --json OUT`.

For every non-text modality with labels: zero-shot top-1/top-5 and per-class recall against
class-name prompts. For every pair of modalities present: retrieval R@1/5/10 in both directions,
including pairs never trained together (emergent). A retrieved item matches when it shares the
query's label (labelled data) or is the query's own sample (unlabelled, paired data). Geometry:
modality gap, alignment over paired samples, uniformity per modality.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch.utils.data import BatchSampler

from anybind.config.schema import Source
from anybind.data.dataset import MultiModalDataset
from anybind.data.lazy import BadSample
from anybind.data.loader import LoaderSettings, batches, make_loader
from anybind.data.sample import UNLABELLED
from anybind.data.shards.stream import ShardSet, reader_loader
from anybind.errors import AnybindError
from anybind.evaluate import alignment, modality_gap, recall_at_k, uniformity, zero_shot
from anybind.evaluate.expert_load import expert_load_report
from anybind.evaluate.zero_shot import ensemble
from anybind.objectives.distributed import gather_no_grad
from anybind.progress import progress_bar
from anybind.recipes.data import Data
from anybind.recipes.distributed import ProcessGroup
from anybind.space import Space
from anybind.threads import one_blas_thread

Embedded = dict[str, tuple[torch.Tensor, torch.Tensor]]


def eval_loader(
    dataset: Data, batch_size: int, settings: LoaderSettings, group: ProcessGroup
) -> tuple[Any, int]:
    """This rank's part of one pass over the data: every world-th row from its rank (map-style
    data) or every world-th shard; and how many samples the whole pass holds."""
    if isinstance(dataset, ShardSet):
        mine = replace(dataset, urls=dataset.urls[group.rank :: group.world])
        return reader_loader(mine, batch_size, settings.workers), dataset.samples
    if isinstance(dataset, MultiModalDataset):
        settings = LoaderSettings()
    rows = list(range(group.rank, len(dataset), group.world))
    return make_loader(dataset, BatchSampler(rows, batch_size, False), settings), len(dataset)


@torch.no_grad()
def embed_dataset(
    space: Space,
    dataset: Data,
    batch_size: int = 512,
    progress: bool = True,
    *,
    settings: LoaderSettings | None = None,
    skipped: list[BadSample] | None = None,
    group: ProcessGroup | None = None,
) -> tuple[Embedded, torch.Tensor, int]:
    """(modality → (embeddings (n, D) on CPU, rows of the samples that have it (n,), sorted),
    label of every row, number of samples embedded). A row is a dataset index, or a sample's
    place in a pass over shards.

    One pass over the data; lazy data and shards are decoded as they are drawn, in
    `settings.workers` processes. Under torchrun every rank embeds its own part and the parts
    are gathered, so every rank returns the whole. A sample that fails to decode stops the
    evaluation with its file and row, or, when a `skipped` list is given, is left out and
    appended to it."""
    space.eval()
    group = group or ProcessGroup()
    device = next(space.parameters()).device
    loader, total = eval_loader(dataset, batch_size, settings or LoaderSettings(), group)
    names = [*space.towers, *space.derived_names()]
    chunks: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {n: [] for n in names}
    seen_rows, seen_labels = [], []
    seen = 0
    with progress_bar("samples", disable=not progress) as bar:
        task = bar.add_task("embedding", total=total)
        for batch in batches(loader):
            if batch["bad"] and skipped is None:
                raise batch["bad"][0].error()
            (skipped if skipped is not None else []).extend(batch["bad"])
            index = batch["index"]
            if isinstance(dataset, ShardSet):  # a pass over shards numbers its own rows
                index = torch.arange(seen, seen + len(index)) * group.world + group.rank
            seen += len(batch["index"]) + len(batch["bad"])
            seen_rows.append(index)
            seen_labels.append(batch["label"])
            for name, (e, rows) in embed_batch(space, batch, device).items():
                chunks[name].append((e.cpu(), index[rows.cpu()]))
            bar.advance(task, (len(batch["index"]) + len(batch["bad"])) * group.world)
    dim = space.config.space.dim
    emb = {
        name: (
            torch.cat([e for e, _ in parts]) if parts else torch.empty(0, dim),
            torch.cat([i for _, i in parts]) if parts else torch.empty(0, dtype=torch.long),
        )
        for name, parts in chunks.items()
    }
    rows, labels = torch.cat(seen_rows), torch.cat(seen_labels)
    if group.active:
        emb = {m: (gather_rows(e), gather_rows(r)) for m, (e, r) in emb.items()}
        rows, labels = gather_rows(rows), gather_rows(labels)
    every = torch.full((int(rows.max()) + 1 if len(rows) else 0,), UNLABELLED, dtype=torch.long)
    every[rows] = labels
    emb = {m: (e[r.argsort()], r.sort().values) for m, (e, r) in emb.items() if len(r)}
    return emb, every, len(rows)


def embed_batch(
    space: Space, batch: dict[str, Any], device: torch.device
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """name → (float embeddings, the batch rows they belong to) for every tower whose modality
    some row holds, then for the embeddings computed from those (the fusion's, the predicted)."""
    out, full = {}, {}
    for name, tower in space.towers.items():
        present = tower_inputs(batch, name, device)
        if present is None:
            continue
        rows, data = present
        e = tower(data).float()
        out[name] = (e, rows)
        full[name] = e.new_zeros(len(batch["index"]), e.shape[1]).index_copy(
            0, rows.to(e.device), e
        )
    if full:
        masks = {m: batch[f"{m}_mask"].to(device) for m in full}
        for name, (derived, has) in space.derived(full, masks).items():
            rows = has.nonzero().flatten()
            out[name] = (derived[rows], rows)
    return out


def tower_inputs(
    batch: dict[str, Any], name: str, device: torch.device
) -> tuple[torch.Tensor, Any] | None:
    """The rows of a batch that hold modality `name` and their inputs, on `device` (None when
    no row does)."""
    if name not in batch or not bool(batch[f"{name}_mask"].any()):
        return None
    rows = batch[f"{name}_mask"].nonzero().flatten()
    data = batch[name]
    data = [data[i] for i in rows.tolist()] if isinstance(data, list) else data[rows]
    return rows, data.to(device) if isinstance(data, torch.Tensor) else data


def gather_rows(x: torch.Tensor) -> torch.Tensor:
    """Every rank's rows of `x`, concatenated in rank order (unequal counts allowed)."""
    return gather_no_grad(x)[0]


@torch.no_grad()
def class_embeddings(
    space: Space, class_names: list[str], templates: list[str], text_modality: str = "text"
) -> torch.Tensor:
    prompts = [t.format(c) for c in class_names for t in templates]
    emb = space.embed(text_modality, prompts).float().cpu()
    return ensemble(emb.view(len(class_names), len(templates), -1))


def evaluate_space(
    space: Space,
    dataset: Data,
    *,
    progress: bool = True,
    name: str = "eval",
    classifiers: dict[str, torch.Tensor] | None = None,
    skip_bad: bool = False,
    group: ProcessGroup | None = None,
) -> dict[str, Any]:
    """`classifiers` replaces the class-prompt embeddings of a modality (e.g. an adapter's head)."""
    config = space.config
    settings = LoaderSettings.from_config(config.data, next(space.parameters()).device)
    skipped: list[BadSample] | None = [] if skip_bad else None
    group = group or ProcessGroup()
    if space.backbone is not None:
        space.backbone.reset_load()
    with one_blas_thread():
        emb, labels, count = embed_dataset(
            space, dataset, config.eval.batch_size, progress and group.main,
            settings=settings, skipped=skipped, group=group,
        )  # fmt: skip
    class_names = dataset.class_names or config.data.class_names
    skipped_count = int(group.sum(len(skipped or [])))
    report = score_embeddings(
        space, emb, labels, count, class_names=class_names, classifiers=classifiers, name=name
    )
    report["skipped_samples"] = skipped_count
    report["skip_reasons"] = [b.message for b in (skipped or [])[:20]]
    if space.backbone is not None and space.backbone.routed:
        report["expert_load"] = expert_load_report(summed_load(space.backbone.load(), group))
    return report


def summed_load(
    load: dict[str, list[list[int]]], group: ProcessGroup
) -> dict[str, list[list[int]]]:
    """The experts' token counts summed over ranks (every rank must call it; every rank ran
    the same keys: every modality of the backbone, every layer)."""
    if not group.active:
        return load
    return {
        m: [[int(group.sum(c)) for c in layer] for layer in layers] for m, layers in load.items()
    }


def score_embeddings(
    space: Space,
    emb: Embedded,
    labels: torch.Tensor,
    count: int,
    *,
    class_names: list[str] | None,
    classifiers: dict[str, torch.Tensor] | None = None,
    name: str = "eval",
) -> dict[str, Any]:
    """The report of `evaluate_space` from embeddings already computed (`embed_dataset`)."""
    config = space.config
    report: dict[str, Any] = {
        "name": name,
        "samples": count,
        "modalities": {m: int(r.numel()) for m, (_, r) in emb.items()},
        "zero_shot": {},
        "retrieval": {},
        "geometry": {},
    }
    text = next((m for m, t in space.towers.items() if t.modality.name == "text"), None)
    trained = {frozenset(p) for p in config.trained_pairs()}

    if text is not None and class_names:
        for m, (e, rows) in emb.items():
            if m in space.towers and space.towers[m].modality.name == "text":
                continue
            if not bool((labels[rows] >= 0).any()):
                continue
            if classifiers and m in classifiers:
                classes = classifiers[m]
            else:
                templates = config.eval.templates.get(m, config.eval.default_templates)
                classes = class_embeddings(space, class_names, templates, text)
            report["zero_shot"][m] = zero_shot(e, labels[rows], classes, class_names)

    names = list(emb)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            (ea, ra), (eb, rb) = emb[a], emb[b]
            labelled = bool((labels[ra] >= 0).all()) and bool((labels[rb] >= 0).all())
            ids_a, ids_b = (labels[ra], labels[rb]) if labelled else (ra, rb)
            kind = "label" if labelled else "pair"
            if not labelled and not bool(torch.isin(ra, rb).any()):
                continue  # unlabelled and never paired: no notion of a match
            for q, k, (eq, iq), (ek, ik) in (
                (a, b, (ea, ids_a), (eb, ids_b)),
                (b, a, (eb, ids_b), (ea, ids_a)),
            ):
                report["retrieval"][f"{q}->{k}"] = {
                    **recall_at_k(eq, ek, query_ids=iq, key_ids=ik),
                    "match": kind,
                    "queries": int(eq.shape[0]),
                    "keys": int(ek.shape[0]),
                    "emergent": frozenset((a, b)) not in trained,
                }
            geo = report["geometry"]
            geo.setdefault("modality_gap", {})[f"{a}|{b}"] = modality_gap(ea, eb)
            both, ia, ib = torch_intersect(ra, rb)
            if both > 1:
                geo.setdefault("alignment", {})[f"{a}|{b}"] = alignment(ea[ia], eb[ib])
    report["geometry"]["uniformity"] = {
        m: uniformity(e, max_samples=config.eval.max_uniformity_samples)
        for m, (e, _) in emb.items()
    }
    return report


def torch_intersect(ra: torch.Tensor, rb: torch.Tensor) -> tuple[int, torch.Tensor, torch.Tensor]:
    """Positions in ra and rb of the sample indices both hold (both sorted ascending)."""
    common = ra[torch.isin(ra, rb)]
    return int(common.numel()), torch.searchsorted(ra, common), torch.searchsorted(rb, common)


def evaluate_sources(
    space: Space,
    sources: list[Source],
    *,
    progress: bool = True,
    skip_bad: bool = False,
    name: str = "eval",
    classifiers: dict[str, torch.Tensor] | None = None,
    exclude_ids: set[str] | None = None,
    group: ProcessGroup | None = None,
) -> dict[str, Any]:
    """`exclude_ids`: sample ids left out of the evaluation (an adapter's adaptation samples).
    Under torchrun (`group`) every rank decodes and embeds only its part of the data."""
    from anybind.recipes.data import build_dataset

    group = group or ProcessGroup()
    dataset, report = build_dataset(
        sources,
        space.config,
        space.modalities,
        skip_bad=skip_bad,
        progress=progress and group.main,
        description=f"loading {name} data",
        cache="none" if group.active else None,  # each rank decodes its own rows only
    )
    excluded = 0
    if exclude_ids and isinstance(dataset, ShardSet):
        raise AnybindError("an adapter's evaluation cannot leave samples out of streamed shards")
    if exclude_ids:
        kept = [i for i, sample_id in enumerate(dataset.ids()) if sample_id not in exclude_ids]
        excluded = len(dataset) - len(kept)
        if not kept:
            raise AnybindError("every evaluation sample was used for adaptation: nothing to score")
        dataset = dataset.subset(kept)
    result = evaluate_space(
        space, dataset, progress=progress, name=name, classifiers=classifiers,
        skip_bad=skip_bad, group=group,
    )  # fmt: skip
    result["excluded_adaptation_samples"] = excluded
    result["skipped_samples"] += report.skipped
    result["skip_reasons"] = (report.reasons + result["skip_reasons"])[:20]
    return result
