"""The Python API, mirroring the CLI.

import anybind
run = anybind.load_run("runs/demo")
img = run.embed("image", [digit_array])           # (1, D), unit-norm
txt = run.embed("text", ["the spoken word seven"])
run.similarity(img, txt)                           # scaled cosine logits
run.evaluate(["digits:test"])                      # same report as `anybind eval`
anybind.train("my.yaml", "runs/mine", overrides=["optim.lr=1e-3"])
anybind.init_run("clip.yaml", "runs/clip")        # pretrained CLIP towers, no training
anybind.extend("runs/demo", "grow.yaml", "runs/demo-pen")  # new towers, the base untouched
anybind.adapt_run("runs/demo", "tent", ["fsdd:../shared/data/fsdd/recordings"], out="runs/t")
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anybind.config import Config, load_config
from anybind.config.schema import Source
from anybind.data.dataset import MultiModalDataset
from anybind.data.lazy import RecordDataset
from anybind.errors import AnybindError, DataError
from anybind.recipes.train import TrainSummary
from anybind.recipes.train import train as _train
from anybind.space import Space, load_space


class Run:
    """A trained space loaded from its run folder."""

    def __init__(
        self,
        run_dir: str | Path,
        device: str | torch.device = "cpu",
        *,
        allow_incomplete: bool = False,
    ):
        self.run_dir = Path(run_dir)
        self.space: Space = load_space(
            self.run_dir, device=device, allow_incomplete=allow_incomplete
        )
        self.config: Config = self.space.config

    @property
    def modalities(self) -> list[str]:
        return list(self.space.towers)

    @torch.no_grad()
    def embed(self, modality: str, inputs: Sequence[Any], batch_size: int = 256) -> torch.Tensor:
        """Raw inputs (paths, arrays, strings) of one modality → (N, D) unit-norm embeddings."""
        if modality not in self.space.towers:
            raise DataError(
                f"this space has no modality '{modality}' (it has {', '.join(self.space.towers)})"
            )
        tower = self.space.towers[modality]
        loaded = [tower.modality.load(x, source=f"input {i}") for i, x in enumerate(inputs)]
        device = next(self.space.parameters()).device
        out = []
        for start in range(0, len(loaded), batch_size):
            batch = tower.modality.collate(loaded[start : start + batch_size])
            out.append(tower(batch.to(device) if isinstance(batch, torch.Tensor) else batch))
        return torch.cat(out).float().cpu() if out else torch.empty(0, self.config.space.dim)

    @torch.no_grad()
    def embed_joint(self, inputs: dict[str, Sequence[Any | None]]) -> torch.Tensor:
        """One joint embedding per sample from the fusion module of the run: `inputs` maps
        fused modalities to equally long lists whose entries may be None (absent in that
        sample); every sample needs one present input. (N, D) unit-norm."""
        fusion = self.config.fusion
        if fusion is None:
            raise AnybindError("this run has no fusion module (add one with `anybind extend`)")
        unknown = [m for m in inputs if m not in fusion.modalities]
        lengths = {len(v) for v in inputs.values()}
        if unknown or len(lengths) != 1:
            raise DataError(
                f"give lists of equal length for the fused modalities {fusion.modalities}"
                + (f" (not {unknown})" if unknown else "")
            )
        n = lengths.pop()
        features, masks = {}, {}
        for m, values in inputs.items():
            mask = torch.tensor([v is not None for v in values], dtype=torch.bool)
            full = torch.zeros(n, self.config.space.dim)
            if bool(mask.any()):
                full[mask] = self.embed(m, [v for v in values if v is not None])
            features[m], masks[m] = full.to(next(self.space.parameters()).device), mask
        joint, has = self.space.fuse(
            features, {m: k.to(features[m].device) for m, k in masks.items()}
        )
        if not bool(has.all()):
            raise DataError(f"sample {int((~has).nonzero()[0])} has none of {fusion.modalities}")
        return joint.float().cpu()

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Scaled cosine similarity (the logits the space was trained with): (Na, Nb)."""
        return self.space.similarity(a, b).detach()

    def evaluate(
        self,
        data: Sequence[str | Source] | MultiModalDataset | RecordDataset | None = None,
        *,
        progress: bool = False,
    ) -> dict[str, Any]:
        """The `anybind eval` report. `data`: source specs as for `--data`, typed sources, a
        dataset, or None for the config's data.eval."""
        from anybind.recipes.evaluate import evaluate_sources, evaluate_space

        if isinstance(data, MultiModalDataset | RecordDataset):
            return evaluate_space(self.space, data, progress=progress)
        sources = as_sources(data or [])
        return evaluate_sources(self.space, sources or self.config.data.eval, progress=progress)


def as_sources(data: Sequence[str | Source]) -> list[Source]:
    """Typed sources from `--data`-style strings (folders labelled by the file-name prefix) or
    sources."""
    from anybind.recipes.source_specs import parse_sources

    sources: list[Source] = []
    for item in data:
        if isinstance(item, str):
            sources += parse_sources(
                [item], modality=None, pattern=r"^(?P<label>[^_]+)_", keys=[], preprocess="none"
            )
        else:
            sources.append(item)
    return sources


def load_run(
    run_dir: str | Path, device: str | torch.device = "cpu", *, allow_incomplete: bool = False
) -> Run:
    """A finished run; one that failed or did not finish only with `allow_incomplete` (its last
    checkpoint's weights, with a warning)."""
    return Run(run_dir, device, allow_incomplete=allow_incomplete)


def train(
    config: str | Path | Config,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainSummary:
    """`anybind train` as a function; returns the run summary."""
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    return _train(config, out, resume=resume, progress=progress)


def extend(
    run_dir: str | Path,
    extension: str | Path | dict[str, Any],
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainSummary:
    """`anybind extend` as a function: train the new modalities of `extension` (a YAML path or
    a dict) against the frozen run `run_dir` into the new run `out`."""
    from anybind.recipes.extend import extend as _extend

    return _extend(run_dir, extension, out, overrides=overrides, resume=resume, progress=progress)


def init_run(
    config: str | Path | Config, out: str | Path, *, overrides: list[str] | None = None
) -> Path:
    """`anybind init` as a function: a run folder from a pretrained CLIP's towers, projections
    and logit scale, trained 0 steps (see anybind.recipes.init); its path."""
    from anybind.recipes.init import init_run as _init_run

    return _init_run(config, out, overrides=overrides)


def adapt_run(
    run_dir: str | Path,
    method: str,
    data: Sequence[str | Source] | MultiModalDataset,
    *,
    modality: str | None = None,
    shots: int | None = None,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    out: str | Path | None = None,
    eval_fraction: float = 0.5,
    progress: bool = False,
) -> dict[str, Any]:
    """`anybind adapt` as a function: adapt the run to `data` (source specs as for `--data`,
    typed sources, or a dataset), save the adapter to `out`, return the scores and the split."""
    from anybind.adapt.run import adapt_run as _adapt_run
    from anybind.adapt.run import target_modality
    from anybind.recipes.data import build_dataset

    space = load_space(run_dir)
    if isinstance(data, MultiModalDataset):
        dataset = data
    else:
        sources = as_sources(data)
        dataset, _ = build_dataset(
            sources, space.config, space.modalities, progress=progress, cache="memory"
        )
    modality = target_modality(space, dataset, modality)
    return _adapt_run(
        run_dir,
        method,
        dataset,
        modality,
        shots=shots,
        seed=seed,
        options=options,
        out=out,
        eval_fraction=eval_fraction,
        progress=progress,
    )


def load_adapted(adapt_dir: str | Path, run_dir: str | Path | None = None) -> Run:
    """A run with an adapter applied (`anybind eval --adapter`): `.space` is the adapted space,
    `.adaptation` what the method changed (its head, tuners, tuned tower tensors)."""
    from anybind.adapt.store import load_adapted as _load_adapted

    meta_run = run_dir
    space, adaptation = _load_adapted(adapt_dir, run_dir)
    run = Run.__new__(Run)
    run.run_dir = Path(meta_run) if meta_run else Path(adapt_dir)
    run.space = space
    run.config = space.config
    run.adaptation = adaptation  # type: ignore[attr-defined]
    return run


def embed(
    run_dir: str | Path,
    data: Sequence[str | Source],
    out: str | Path,
    *,
    modality: str | None = None,
    pattern: str = r"^(?P<label>[^_]+)_",
    keys: Sequence[str] = (),
    preprocess: str = "none",
    batch_size: int = 256,
    part_size: int = 10_000,
    dtype: str = "float16",
    device: str = "cpu",
    adapter: str | Path | None = None,
    workers: int = 0,
    skip_bad: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """`anybind embed` as a function: embed every sample of `data` (source specs or typed
    sources) into `out`; the manifest (empty on ranks other than 0 under torchrun)."""
    from anybind.recipes.distributed import join_process_group
    from anybind.recipes.embed import EmbedSettings, embed_collection
    from anybind.recipes.source_specs import parse_sources

    specs = [d for d in data if isinstance(d, str)]
    sources = parse_sources(
        specs, modality=modality, pattern=pattern, keys=list(keys), preprocess=preprocess
    ) + [d for d in data if not isinstance(d, str)]
    from anybind.adapt.store import load_space_with

    space = load_space_with(run_dir, adapter, device=device)
    group = join_process_group(next(space.parameters()).device)
    from anybind.recipes.data import build_dataset

    dataset, _ = build_dataset(sources, space.config, space.modalities, progress=progress,
                               cache="none")  # fmt: skip
    settings = EmbedSettings(batch_size, part_size, dtype, workers, skip_bad, progress)
    try:
        return embed_collection(
            space, dataset, Path(out), settings, run_dir=Path(run_dir),
            adapter=Path(adapter) if adapter else None, group=group,
        )  # fmt: skip
    finally:
        group.close()


def search(
    run_dir: str | Path,
    index: str | Path,
    *,
    text: Sequence[str] = (),
    files: Sequence[str | Path] = (),
    to: str,
    k: int = 10,
    adapter: str | Path | None = None,
    file_modality: str | None = None,
) -> list[dict[str, Any]]:
    """`anybind search` as a function: the k nearest items of modality `to` for each query
    (texts, and files of any modality the space has); one result per query, in order.
    `file_modality` says which modality the files are when several read their suffix."""
    from anybind.search.engine import Searcher

    searcher = Searcher.for_run(run_dir, index, adapter=adapter)
    queries: list[tuple[str, str, Any]] = [(searcher.text_tower(), t, t) for t in text]
    for f in map(Path, files):
        if not f.is_file():
            raise AnybindError(f"query file not found: {f}")
        modality = searcher.modality_for_suffix(f.suffix, file_modality)
        if modality is None:
            raise AnybindError(f"{f}: no modality of the space reads '{f.suffix}' files")
        queries.append((modality, str(f), str(f)))
    if not queries:
        raise AnybindError("no query: pass --text or --file")
    results = []
    for modality in dict.fromkeys(m for m, _, _ in queries):  # one forward pass per modality
        batch = [(shown, value) for m, shown, value in queries if m == modality]
        vectors = searcher.embed(modality, [v for _, v in batch])
        for (shown, _), hits in zip(batch, searcher.search(vectors, to, k), strict=True):
            results.append({"query": shown, "modality": modality,
                            "hits": [h.as_dict() for h in hits]})  # fmt: skip
    order = {shown: i for i, (_, shown, _) in enumerate(queries)}
    return sorted(results, key=lambda r: order[r["query"]])


def index(emb_dir: str | Path, kind: str = "flat", **params: Any) -> dict[str, dict[str, Any]]:
    """`anybind index` as a function: one FAISS index per modality of an embedded collection
    (`kind` flat, ivf or hnsw; `nlist`, `nprobe`, `m`, `ef_search`, `target_recall` override
    the defaults);
    each index's build parameters and measured recall."""
    from anybind.recipes.index import index_collection
    from anybind.search.index import IndexParams

    return index_collection(emb_dir, IndexParams(kind, **params))
