"""The index of a shard set (`index.json` beside the shards) and the expansion of shard URLs.

    {"format": "anybind-shards/1", "samples": 20000, "class_names": [...],
     "modalities": {"image": 20000, "text": 20000},
     "shards": [{"name": "shard-000000.tar", "samples": 1000}, ...]}

A shard path is a local glob (`data/shard-*.tar`), a brace list (`data/shard-{000000..000019}.tar`)
or any URL webdataset opens, such as `pipe:aws s3 cp s3://bucket/shard-{000000..000019}.tar -`.
"""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anybind.errors import DataError

INDEX_NAME = "index.json"
FORMAT = "anybind-shards/1"


@dataclass
class ShardIndex:
    shards: list[dict[str, Any]] = field(default_factory=list)  # name, samples
    modalities: dict[str, int] = field(default_factory=dict)
    class_names: list[str] | None = None
    samples: int = 0

    def to_json(self) -> str:
        return json.dumps(
            {
                "format": FORMAT,
                "samples": self.samples,
                "class_names": self.class_names,
                "modalities": self.modalities,
                "shards": self.shards,
            },
            indent=2,
        )

    def samples_in(self, urls: list[str]) -> int:
        """Samples held by the shards among `urls` (matched by file name)."""
        sizes = {s["name"]: int(s["samples"]) for s in self.shards}
        missing = [u for u in urls if _name(u) not in sizes]
        if missing:
            raise DataError(f"shard {missing[0]} is not in the index")
        return sum(sizes[_name(u)] for u in urls)


def _name(url: str) -> str:
    return url.rstrip(" -").split("/")[-1].split()[-1]


def expand_urls(path: str) -> list[str]:
    """The shard URLs of a path: brace lists expanded, local globs matched (sorted)."""
    import braceexpand

    urls: list[str] = []
    for item in braceexpand.braceexpand(path):
        if item.startswith("pipe:") or "://" in item:
            urls.append(item)
        elif any(c in item for c in "*?["):
            urls += sorted(glob.glob(item))
        else:
            urls.append(item)
    if not urls:
        raise DataError("no shards match the path", path=path)
    local_missing = [u for u in urls if not u.startswith("pipe:") and "://" not in u]
    local_missing = [u for u in local_missing if not Path(u).is_file()]
    if local_missing:
        raise DataError("shard not found", path=local_missing[0])
    return urls


def default_index_path(path: str) -> Path | None:
    """index.json in the folder of local shards; None for remote ones."""
    if path.startswith("pipe:") or "://" in path:
        return None
    return Path(path).parent / INDEX_NAME


def read_index(path: str | Path) -> ShardIndex:
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(
            "shard index not found (write it with `anybind shard`)", path=str(path)
        ) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read the shard index: {exc}", path=str(path)) from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise DataError(f"not a {FORMAT} index", path=str(path))
    try:
        return ShardIndex(
            shards=[{"name": str(s["name"]), "samples": int(s["samples"])} for s in raw["shards"]],
            modalities={str(k): int(v) for k, v in raw["modalities"].items()},
            class_names=raw.get("class_names"),
            samples=int(raw["samples"]),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DataError(f"the shard index is malformed ({exc})", path=str(path)) from None
