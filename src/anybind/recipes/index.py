"""Index an embedded collection: `anybind index EMB_DIR --kind flat|ivf|hnsw`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from anybind.search.index import IndexParams, build_index, index_info, save_index, tune
from anybind.search.store import EmbeddedCollection


def index_collection(
    root: str | Path, params: IndexParams, modalities: list[str] | None = None
) -> dict[str, dict[str, Any]]:
    """One index per modality of the collection (or of `modalities`); each one's info."""
    collection = EmbeddedCollection.open(root)
    infos = {}
    for name in modalities or collection.modalities:
        embedded = collection.modality(name)
        filled = params.filled(len(embedded))
        started = time.perf_counter()
        index = build_index(embedded.vectors, filled)
        seconds = time.perf_counter() - started
        tuned = filled.kind != "flat" and not (filled.nprobe or filled.ef_search)
        filled, recall = tune(index, embedded.vectors, filled)
        dim = embedded.vectors.shape[1]
        info = index_info(filled, len(embedded), dim, seconds, recall, tuned)
        save_index(collection.root, name, index, info)
        infos[name] = info
    return infos
