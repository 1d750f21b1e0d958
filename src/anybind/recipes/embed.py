"""Embed a collection: `anybind embed RUN_DIR --data … --out EMB_DIR`.

The data is cut into parts of `part_size` samples in data order. Each part is decoded as it is
drawn (DataLoader workers, nothing held in memory beyond a batch), embedded by every tower whose
modality it holds, and written as one `.npy` and one Parquet table per modality, then its marker
(anybind.search.store). A rerun keeps the parts whose marker is there and redoes the rest, so an
interrupted embed resumes. Under torchrun rank r embeds parts r, r + world, …; rank 0 writes the
manifest once every part is done.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler

from anybind.checkpoint import WEIGHTS, atomic_write_text, file_sha256
from anybind.data.dataset import MultiModalDataset
from anybind.data.lazy import BadSample, RecordDataset
from anybind.data.loader import LoaderSettings, batches, make_loader
from anybind.data.shards.stream import ShardSet, reader_loader
from anybind.errors import AnybindError, ConfigError
from anybind.progress import progress_bar
from anybind.recipes.distributed import ProcessGroup
from anybind.recipes.evaluate import embed_batch
from anybind.search.store import MANIFEST, META_COLUMNS, SETTINGS, done_parts, write_part
from anybind.space import Space

Collection = RecordDataset | MultiModalDataset | ShardSet
DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass
class EmbedSettings:
    batch_size: int = 256
    part_size: int = 10_000
    dtype: str = "float16"
    workers: int = 0
    skip_bad: bool = False
    progress: bool = True


def embed_collection(
    space: Space,
    dataset: Collection,
    out: Path,
    settings: EmbedSettings,
    *,
    run_dir: Path,
    adapter: Path | None = None,
    group: ProcessGroup | None = None,
) -> dict[str, Any]:
    """Embed every sample of `dataset` into `out`; the manifest."""
    group = group or ProcessGroup()
    if settings.dtype not in DTYPES:
        raise ConfigError(f"--dtype is float16 or float32, not {settings.dtype}", key="--dtype")
    streamed = isinstance(dataset, ShardSet)
    n = dataset.samples if streamed else len(dataset)
    if n == 0:
        raise AnybindError("the data holds no samples to embed")
    # a part is a shard of streamed data, else `part_size` consecutive rows
    parts = len(dataset.urls) if streamed else (n + settings.part_size - 1) // settings.part_size
    wanted = embed_settings(space, run_dir, adapter, n, parts, settings)
    if streamed:
        wanted["part_size"] = "shard"
        wanted["shards"] = list(dataset.urls)
    if group.main:
        claim_folder(out, wanted)
    group.barrier()
    done = done_parts(out)
    mine = [k for k in range(group.rank, parts, group.world) if k not in done]
    space.eval()
    space.stop_caching()
    skipped: list[str] = []
    with progress_bar("items", disable=not (settings.progress and group.main)) as bar:
        already = sum(int(info.get("samples", 0)) for info in done.values())
        task = bar.add_task("embedding", total=n, completed=already)
        for k in mine:
            loader, rows = part_loader(dataset, k, n, settings)
            vectors, tables, bad, seen = embed_part(space, dataset, loader, settings)
            skipped += bad
            info = {"rows": rows, "samples": seen, "rank": group.rank, "skipped": len(bad)}
            write_part(out, k, vectors, tables, info)
            bar.advance(task, seen * group.world)
    group.barrier()
    manifest = finish_manifest(out, wanted, parts) if group.main else {}
    group.barrier()
    return manifest


def part_loader(
    dataset: Collection, k: int, n: int, settings: EmbedSettings
) -> tuple[Any, list[int] | str]:
    """The batches of part k, and what the part is (its rows, or its shard)."""
    if isinstance(dataset, ShardSet):
        shard = replace(dataset, urls=[dataset.urls[k]])
        return reader_loader(shard, settings.batch_size, min(settings.workers, 1)), dataset.urls[k]
    rows = range(k * settings.part_size, min(n, (k + 1) * settings.part_size))
    loader_settings = LoaderSettings(workers=settings.workers)
    if isinstance(dataset, MultiModalDataset):
        loader_settings = LoaderSettings()
    sampler = BatchSampler(list(rows), settings.batch_size, False)
    return make_loader(dataset, sampler, loader_settings), [rows.start, rows.stop]


def embed_settings(
    space: Space,
    run_dir: Path,
    adapter: Path | None,
    n: int,
    parts: int,
    settings: EmbedSettings,
) -> dict[str, Any]:
    return {
        "run": str(run_dir.resolve()),
        "weights_sha256": file_sha256(run_dir / WEIGHTS),
        "adapter": str(adapter.resolve()) if adapter else None,
        "dim": space.config.space.dim,
        "dtype": settings.dtype,
        "samples": n,
        "part_size": settings.part_size,
        "parts": parts,
        "class_names": list(space.config.data.class_names or []),
    }


def claim_folder(out: Path, wanted: dict[str, Any]) -> None:
    """Start `out`, or check that it was started with the same settings (then its finished
    parts are kept)."""
    path = out / SETTINGS
    if path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AnybindError(f"{path}: not JSON ({exc})") from None
        changed = sorted(k for k in wanted if have.get(k) != wanted[k])
        if changed:
            raise AnybindError(
                f"{out} holds an embedding made with other settings ({', '.join(changed)} "
                "differ): use another --out, or delete it"
            )
        return
    if out.exists() and any(out.iterdir()):
        raise AnybindError(f"{out} exists and is not an embedding folder: use another --out")
    atomic_write_text(path, json.dumps(wanted, indent=2))


@torch.no_grad()
def embed_part(
    space: Space, dataset: Collection, loader: Any, settings: EmbedSettings
) -> tuple[dict[str, np.ndarray], dict[str, dict[str, list[Any]]], list[str], int]:
    """The vectors and metadata of one part, per modality it holds; the reasons of the samples
    skipped (a bad sample stops with its file and row unless `skip_bad`); the samples seen."""
    device = next(space.parameters()).device
    chunks: dict[str, list[np.ndarray]] = {}
    tables: dict[str, dict[str, list[Any]]] = {}
    skipped: list[str] = []
    names = space.config.data.class_names or []
    seen = 0

    def keep(
        name: str, emb: torch.Tensor, present: list[int], batch: dict, index: torch.Tensor
    ) -> None:
        chunks.setdefault(name, []).append(emb.cpu().numpy().astype(DTYPES[settings.dtype]))
        table = tables.setdefault(name, {c: [] for c in META_COLUMNS})
        for i in present:
            row = int(index[i])
            label = int(batch["label"][i])
            table["id"].append(batch["id"][i])
            table["row"].append(row)
            table["path"].append(source_path(dataset, row, name))
            table["label"].append(label)
            table["class"].append(names[label] if 0 <= label < len(names) else None)

    for batch in batches(loader):
        skipped += check_bad(batch["bad"], settings.skip_bad)
        # a shard numbers its samples by their place in the shard
        index = batch["index"]
        if isinstance(dataset, ShardSet):
            index = torch.arange(seen, seen + len(index))
        seen += len(index) + len(batch["bad"])
        # towers, then the fusion's joint embedding and the predicted ones, like any modality
        for name, (emb, rows) in embed_batch(space, batch, device).items():
            emb = torch.nn.functional.normalize(emb, dim=-1)
            keep(name, emb, rows.tolist(), batch, index)
    vectors = {m: np.concatenate(c) for m, c in chunks.items()}
    return vectors, tables, skipped, seen


def check_bad(bad: list[BadSample], skip_bad: bool) -> list[str]:
    if bad and not skip_bad:
        raise bad[0].error()
    return [b.message for b in bad]


def source_path(dataset: Collection, row: int, modality: str) -> str | None:
    """The file a sample's modality was read from, when it was read from one."""
    if not isinstance(dataset, RecordDataset):
        return None
    value = dataset.records[row].values.get(modality)
    if modality not in dataset.modalities:  # a joint or predicted embedding: no one file
        return None
    if isinstance(value, str) and dataset.modalities[modality].is_file(value):
        return str(Path(value).resolve())
    return None


def finish_manifest(out: Path, wanted: dict[str, Any], parts: int) -> dict[str, Any]:
    done = done_parts(out)
    missing = [k for k in range(parts) if k not in done]
    if missing:
        raise AnybindError(f"{out}: parts {missing[:5]} were not embedded; run embed again")
    counts: dict[str, int] = {}
    for info in done.values():
        for m, c in info["counts"].items():
            counts[m] = counts.get(m, 0) + int(c)
    manifest = {
        **wanted,
        "counts": counts,
        "skipped": sum(int(info.get("skipped", 0)) for info in done.values()),
        "parts": {
            str(k): {
                "rows": done[k]["rows"],
                "samples": done[k].get("samples"),
                "rank": done[k]["rank"],
            }
            for k in sorted(done)
        },
    }
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
