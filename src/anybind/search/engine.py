"""Any-to-any search: queries of any modality embedded by the space, answered from the index of
any modality of an embedded collection."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from anybind.checkpoint import WEIGHTS, file_sha256
from anybind.errors import AnybindError, DataError
from anybind.modalities.base import EncodedFile
from anybind.search.index import load_index
from anybind.search.store import EmbeddedCollection
from anybind.space import Space

MAX_K = 1000


@dataclass
class Hit:
    id: str
    path: str | None
    label: int
    class_name: str | None
    score: float

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "path": self.path, "label": self.label,
                "class": self.class_name, "score": self.score}  # fmt: skip


@dataclass
class Searcher:
    """A space and the indexes of one embedded collection made with it."""

    space: Space
    collection: EmbeddedCollection
    _indexes: dict[str, tuple[Any, dict[str, np.ndarray]]] = field(default_factory=dict, repr=False)

    @classmethod
    def for_run(
        cls, run_dir: str | Path, root: str | Path, *, adapter: str | Path | None = None
    ) -> Searcher:
        """The run's space (adapted when `adapter` is given) over a collection that must have
        been embedded with the run's weights."""
        from anybind.adapt.store import load_space_with

        sha = file_sha256(Path(run_dir) / WEIGHTS)
        return cls.open(load_space_with(run_dir, adapter), root, weights_sha256=sha)

    @classmethod
    def open(cls, space: Space, root: str | Path, *, weights_sha256: str | None = None) -> Searcher:
        collection = EmbeddedCollection.open(root)
        made_with = collection.manifest.get("weights_sha256")
        if weights_sha256 is not None and made_with != weights_sha256:
            raise AnybindError(
                f"{root} was embedded with other weights than this run's (SHA-256 mismatch): "
                "embed the collection again with this run"
            )
        space.stop_caching()  # queries are not repeated: no feature cache growing with them
        return cls(space, collection)

    def index(self, modality: str) -> tuple[Any, dict[str, np.ndarray]]:
        """The FAISS index of `modality` and its metadata columns (read once, as object arrays
        so that a query's rows are picked in one indexing step)."""
        if modality not in self._indexes:
            table = self.collection.modality(modality).table
            columns = {c: np.array(table.column(c).to_pylist(), dtype=object)
                       for c in ("id", "path", "label", "class")}  # fmt: skip
            self._indexes[modality] = (load_index(self.collection.root, modality)[0], columns)
        return self._indexes[modality]

    def tower(self, modality: str) -> Any:
        if modality not in self.space.towers:
            known = ", ".join(self.space.towers)
            raise AnybindError(f"the space has no '{modality}' tower (it has {known})")
        return self.space.towers[modality]

    def text_tower(self) -> str:
        """The tower that reads text queries."""
        for name, tower in self.space.towers.items():
            if tower.modality.name == "text":
                return name
        raise AnybindError("the space has no text tower: search with a file")

    def modality_for_suffix(self, suffix: str, requested: str | None = None) -> str | None:
        """The tower whose modality reads files with this suffix (None if no tower does). When
        several do (`.npy`: image, video, point cloud), `requested` must say which; a DataError
        says so otherwise, or when the requested tower does not read the suffix."""
        readers = [
            name
            for name, tower in self.space.towers.items()
            if suffix.lower() in tower.modality.file_suffixes
        ]
        if requested is not None:
            if requested not in self.space.towers:
                known = ", ".join(self.space.towers)
                raise DataError(f"this space has no modality '{requested}' (it has {known})")
            if requested not in readers:
                raise DataError(f"the {requested} modality does not read '{suffix}' files")
            return requested
        if len(readers) > 1:
            raise DataError(
                f"'{suffix}' files are read by {', '.join(readers)}: say which modality the file is"
            )
        return readers[0] if readers else None

    def decode(self, modality: str, raw: Any) -> Any:
        """One raw query value (a string, a file path, an uploaded file, an array) decoded and
        preprocessed as the space's training data was; a DataError names what is wrong."""
        source = f"the upload {raw.name}" if isinstance(raw, EncodedFile) else "the query"
        return self.tower(modality).modality.load(raw, source=source)

    @torch.no_grad()
    def embed_decoded(self, modality: str, decoded: list[Any]) -> np.ndarray:
        """(Q, D) unit-norm float32 embeddings of decoded values, in one forward pass."""
        tower = self.tower(modality)
        emb = torch.nn.functional.normalize(tower(tower.modality.collate(decoded)).float(), dim=-1)
        return emb.cpu().numpy()

    def embed(self, modality: str, values: list[Any]) -> np.ndarray:
        """(Q, D) unit-norm float32 embeddings of raw query values of `modality`."""
        if not values:
            raise AnybindError("no query given")
        return self.embed_decoded(modality, [self.decode(modality, v) for v in values])

    def search(self, queries: np.ndarray, to: str, k: int = 10) -> list[list[Hit]]:
        """The k nearest items of modality `to` for each query vector, best first."""
        if not 1 <= k <= MAX_K:
            raise AnybindError(f"k must be between 1 and {MAX_K}, not {k}")
        index, columns = self.index(to)
        scores, ids = index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        results = []
        for row_scores, row_ids in zip(scores, ids, strict=True):
            keep = row_ids >= 0
            rows = row_ids[keep]
            results.append(list(map(Hit, columns["id"][rows], columns["path"][rows],
                                    columns["label"][rows], columns["class"][rows],
                                    row_scores[keep].tolist())))  # fmt: skip
        return results
