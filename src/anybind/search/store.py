"""An embedded collection on disk (`anybind embed`), and reading it back.

    EMB_DIR/
      embed.json                 what is being embedded: run, weights SHA-256, dim, dtype, rows,
                                 part size; a rerun with other settings is refused
      parts/part-00003.json      written last for each part: its rows, its counts per modality
      image/emb-00003.npy        (n, D) float16 or float32, unit norm, one row per sample of
                                 part 3 that holds the modality
      image/meta-00003.parquet   id, row (the sample's index in the data), path (its file, when
                                 it came from one), label, class
      manifest.json              written when every part is done: the above, plus counts, parts
                                 and which rank embedded each

Row i of `emb-K.npy` and row i of `meta-K.parquet` describe the same sample (clip-retrieval's
layout, one folder per modality). Writes are atomic, so a part is either whole or absent.
"""

from __future__ import annotations

import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from anybind.checkpoint import atomic_write_bytes, atomic_write_text, writing
from anybind.errors import AnybindError

SETTINGS = "embed.json"
MANIFEST = "manifest.json"
META_COLUMNS = ("id", "row", "path", "label", "class")


def part_name(k: int) -> str:
    return f"{k:05d}"


def marker(root: Path, k: int) -> Path:
    return root / "parts" / f"part-{part_name(k)}.json"


def write_part(
    root: Path,
    k: int,
    vectors: dict[str, np.ndarray],
    tables: dict[str, dict[str, list[Any]]],
    info: dict[str, Any],
) -> None:
    """Part k's vectors and metadata per modality, then its marker (so a part is done only
    when all of it is on disk)."""
    for modality, array in vectors.items():
        folder = root / modality
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=False)
        atomic_write_bytes(folder / f"emb-{part_name(k)}.npy", buffer.getvalue())
        write_parquet(folder / f"meta-{part_name(k)}.parquet", tables[modality])
    counts = {m: int(a.shape[0]) for m, a in vectors.items()}
    atomic_write_text(marker(root, k), json.dumps({**info, "part": k, "counts": counts}))


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    schema = pa.schema(
        [("id", pa.string()), ("row", pa.int64()), ("path", pa.string()),
         ("label", pa.int64()), ("class", pa.string())]
    )  # fmt: skip
    table = pa.table({c: columns[c] for c in META_COLUMNS}, schema=schema)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(fd)
    try:
        with writing(path):
            pq.write_table(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def done_parts(root: Path) -> dict[int, dict[str, Any]]:
    """The parts whose marker is on disk, with their markers."""
    found = {}
    for path in sorted((root / "parts").glob("part-*.json")):
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
            found[int(info["part"])] = info
        except (ValueError, KeyError, TypeError) as exc:
            message = f"{path}: not a part marker ({exc}); delete it to redo the part"
            raise AnybindError(message) from None
    return found


@dataclass
class EmbeddedModality:
    """One modality of an embedded collection: its vectors (memory-mapped, in part order) and
    the metadata of each row."""

    name: str
    vectors: np.ndarray  # (N, D), float32
    table: pa.Table  # META_COLUMNS, row i describes vectors[i]

    def __len__(self) -> int:
        return int(self.vectors.shape[0])


@dataclass
class EmbeddedCollection:
    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> EmbeddedCollection:
        root = Path(root)
        path = root / MANIFEST
        if not path.is_file():
            started = (root / SETTINGS).is_file()
            hint = " (an interrupted `anybind embed`: run it again to finish)" if started else ""
            raise AnybindError(f"{root} is not a finished embedded collection{hint}")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise AnybindError(f"{path}: not JSON ({exc})") from None
        return cls(root, manifest)

    @property
    def modalities(self) -> list[str]:
        return [m for m, n in self.manifest["counts"].items() if n]

    def modality(self, name: str) -> EmbeddedModality:
        if name not in self.modalities:
            known = ", ".join(self.modalities)
            raise AnybindError(f"{self.root} holds no '{name}' embeddings (it holds {known})")
        parts = sorted(int(k) for k in self.manifest["parts"])
        arrays, tables = [], []
        for k in parts:
            emb = self.root / name / f"emb-{part_name(k)}.npy"
            if emb.is_file():
                arrays.append(np.load(emb, mmap_mode="r"))
                tables.append(pq.read_table(self.root / name / f"meta-{part_name(k)}.parquet"))
        vectors = np.concatenate(arrays).astype(np.float32, copy=False)
        return EmbeddedModality(name, vectors, pa.concat_tables(tables))
