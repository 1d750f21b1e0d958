"""AV digits: real paired image + audio samples, each real MNIST image with a real FSDD recording
of the same digit, for measuring fusion and robustness on real data.

The pairing rule (seeded, documented, a pure function of the files and the seed): for each
digit d, the MNIST rows labelled d are put in a random order and so are the FSDD recordings of
d (file names sorted first, then permuted), both with `numpy.random.default_rng((seed, d))`;
the i-th image of the order is paired with recording i mod n_d, so every recording is used
⌈rows / n_d⌉ times or one fewer. `pairs` gives the manifest (MNIST row, FSDD file, digit);
`write_pairs` saves it as JSONL. Images are mapped onto the UCI format (`mnist_to_uci`) as the
`mnist:` data set does.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from anybind.data.digits.images import mnist_to_uci
from anybind.data.sample import RawRecord
from anybind.errors import DataError

MNIST = Path("mnist") / "mnist-test-first5000.npz"
FSDD = Path("fsdd") / "recordings"


def pairs(shared: str | Path, seed: int = 0) -> list[dict[str, object]]:
    """The pairing manifest: one row per MNIST image, in MNIST row order."""
    shared = Path(shared)
    labels = mnist_labels(shared / MNIST)
    recordings = fsdd_by_digit(shared / FSDD)
    out: list[dict[str, object]] = []
    for digit in range(10):
        rows = np.nonzero(labels == digit)[0]
        files = recordings.get(digit, [])
        if len(rows) and not files:
            raise DataError(f"no FSDD recording of the digit {digit}", path=str(shared / FSDD))
        rng = np.random.default_rng((seed, digit))
        rows = rows[rng.permutation(len(rows))]
        files = [files[i] for i in rng.permutation(len(files))]
        out += [
            {"mnist_row": int(r), "fsdd": files[i % len(files)], "label": digit}
            for i, r in enumerate(rows)
        ]
    return sorted(out, key=lambda p: p["mnist_row"])  # type: ignore[arg-type, return-value]


def write_pairs(shared: str | Path, path: str | Path, seed: int = 0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(p) + "\n" for p in pairs(shared, seed)), encoding="utf-8")
    return path


def av_digits_records(shared: str | Path, seed: int = 0) -> list[RawRecord]:
    shared = Path(shared)
    with np.load(shared / MNIST, allow_pickle=False) as npz:
        images = npz["images"]
    records = []
    for p in pairs(shared, seed):
        row = int(p["mnist_row"])  # type: ignore[call-overload]
        records.append(
            RawRecord(
                values={
                    "image": mnist_to_uci(images[row : row + 1])[0],
                    "audio": str(shared / FSDD / str(p["fsdd"])),
                },
                label=int(p["label"]),  # type: ignore[call-overload]
                id=f"av-{row}",
                source="AV digits",
                path=str(shared / MNIST),
                row=row + 1,
            )
        )
    return records


def mnist_labels(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError("MNIST file not found", path=str(path))
    with np.load(path, allow_pickle=False) as npz:
        return np.asarray(npz["labels"], dtype=np.int64)


def fsdd_by_digit(folder: Path) -> dict[int, list[str]]:
    if not folder.is_dir():
        raise DataError("FSDD folder not found", path=str(folder))
    out: dict[int, list[str]] = {}
    for f in sorted(folder.glob("*.wav")):
        match = re.match(r"^(\d)_", f.name)
        if match:
            out.setdefault(int(match.group(1)), []).append(f.name)
    return out
