"""FAISS indexes over an embedded collection: one per modality, saved beside its shards.

Kinds (inner product on unit vectors = cosine):
- `flat`: exact (`IndexFlatIP`).
- `ivf`: `IndexIVFFlat` with `nlist` ≈ 4·√N lists (autofaiss's rule of thumb, clipped to
  [1, N/39] so every list trains on ≥ 39 points), searched with `nprobe` lists.
- `hnsw`: `IndexHNSWFlat` with `M` links per node, `efConstruction` at build and `efSearch` at
  query time.

Build defaults come from the collection size; the query-time setting (nprobe, efSearch), when
not given, is tuned like autofaiss does: the smallest value on a doubling ladder whose recall@10
against exact search, measured on 1,000 of the collection's vectors, reaches `target_recall`
(0.95). Everything is overridable; the parameters, the build time and the measured recall are
written to `index/<modality>.json` beside `index/<modality>.faiss`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from anybind.checkpoint import atomic_write_text, writing
from anybind.errors import AnybindError, ConfigError

KINDS = ("flat", "ivf", "hnsw")


@dataclass
class IndexParams:
    kind: str = "flat"
    nlist: int | None = None
    nprobe: int | None = None
    m: int | None = None
    ef_construction: int | None = None
    ef_search: int | None = None
    target_recall: float = 0.95

    def filled(self, n: int) -> IndexParams:
        """The parameters with the size-based defaults filled in."""
        if self.kind not in KINDS:
            raise ConfigError(f"--kind is one of {', '.join(KINDS)}, not {self.kind}", key="--kind")
        if not 0 < self.target_recall <= 1:
            raise ConfigError("the target recall is in (0, 1]", key="--target-recall")
        out = IndexParams(self.kind, target_recall=self.target_recall)
        if self.kind == "ivf":
            nlist = self.nlist or max(1, min(int(4 * math.sqrt(n)), n // 39))
            if nlist > n:
                raise ConfigError(f"nlist {nlist} is more than the {n} vectors", key="--nlist")
            out.nlist = nlist
            out.nprobe = min(nlist, self.nprobe) if self.nprobe else None  # None: tuned
        if self.kind == "hnsw":
            out.m = self.m or 32
            out.ef_construction = self.ef_construction or 80
            out.ef_search = self.ef_search  # None: tuned
        return out


def build_index(vectors: np.ndarray, params: IndexParams) -> Any:
    """A FAISS index over (N, D) float32 unit vectors; ids are the row numbers."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = x.shape[1]
    if params.kind == "flat":
        index = faiss.IndexFlatIP(dim)
    elif params.kind == "ivf":
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, params.nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(x)
        index.nprobe = params.nprobe or 1
    else:
        index = faiss.IndexHNSWFlat(dim, params.m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = params.ef_construction
        index.add(x)
        index.hnsw.efSearch = params.ef_search or 16
        return index
    index.add(x)
    return index


def recall_at(found: np.ndarray, found_scores: np.ndarray, kth_exact: np.ndarray) -> float:
    """The share of the k results that are among the exact top k, where a result scoring at
    least the exact k-th score counts (so equal-scoring duplicates are not misses)."""
    valid = found >= 0
    good = valid & (found_scores >= kth_exact[:, None] - 1e-5)
    return float(good.sum()) / max(1, found.shape[0] * found.shape[1])


def measured_recall(index: Any, vectors: np.ndarray, k: int = 10, queries: int = 1000) -> float:
    """recall@k of `index` against exact search, over up to `queries` of the vectors
    themselves (a seeded pick); a result's score is recomputed exactly from the vectors."""
    import faiss

    x = np.ascontiguousarray(vectors, dtype=np.float32)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(x), size=min(queries, len(x)), replace=False)
    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    k = min(k, len(x))
    truth, _ = exact.search(x[pick], k)
    _, found = index.search(x[pick], k)
    scores = np.einsum("qd,qkd->qk", x[pick], x[np.clip(found, 0, None)])
    return recall_at(found, scores, truth[:, -1])


def tune(index: Any, vectors: np.ndarray, params: IndexParams) -> tuple[IndexParams, float]:
    """The query-time setting not given: the smallest on a doubling ladder whose measured
    recall@10 reaches the target (the largest tried when none does); and that recall."""
    if params.kind == "flat":
        return params, 1.0
    given = params.nprobe if params.kind == "ivf" else params.ef_search
    top = params.nlist if params.kind == "ivf" else 1024
    ladder = [given] if given else [v for v in (2**i for i in range(11)) if v <= (top or 1)]
    ladder = ladder or [1]
    recall = 0.0
    for value in ladder:
        if params.kind == "ivf":
            index.nprobe = value
        else:
            index.hnsw.efSearch = max(value, 10)
        recall = measured_recall(index, vectors)
        if recall >= params.target_recall:
            break
    tuned = replace(params)
    if params.kind == "ivf":
        tuned.nprobe = int(index.nprobe)
    else:
        tuned.ef_search = int(index.hnsw.efSearch)
    return tuned, recall


def index_paths(root: Path, modality: str) -> tuple[Path, Path]:
    folder = root / "index"
    return folder / f"{modality}.faiss", folder / f"{modality}.json"


def save_index(root: Path, modality: str, index: Any, info: dict[str, Any]) -> None:
    import faiss

    path, meta = index_paths(root, modality)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial")
    with writing(path):
        faiss.write_index(index, str(tmp))
    tmp.replace(path)
    atomic_write_text(meta, json.dumps(info, indent=2))


def load_index(root: Path, modality: str) -> tuple[Any, dict[str, Any]]:
    import faiss

    path, meta = index_paths(root, modality)
    if not path.is_file() or not meta.is_file():
        raise AnybindError(f"{root} has no index for '{modality}': run `anybind index {root}`")
    info = json.loads(meta.read_text(encoding="utf-8"))
    try:
        index = faiss.read_index(str(path))
    except RuntimeError as exc:
        raise AnybindError(f"cannot read the index {path}: {exc}") from None
    if info.get("kind") == "ivf":
        index.nprobe = int(info["params"]["nprobe"])
    elif info.get("kind") == "hnsw":
        index.hnsw.efSearch = int(info["params"]["ef_search"])
    return index, info


def index_info(
    params: IndexParams, n: int, dim: int, seconds: float, recall: float, tuned: bool
) -> dict:
    return {
        "kind": params.kind,
        "tuned_query_setting": tuned,
        "metric": "ip",
        "params": asdict(params),
        "vectors": n,
        "dim": dim,
        "build_seconds": round(seconds, 3),
        "recall_at_10": recall,
        "built": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
