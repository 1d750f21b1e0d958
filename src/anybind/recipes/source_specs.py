"""Turn `--data`-style strings (the CLI's and the API's) into typed data sources."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import TypeAdapter, ValidationError

from anybind.config.schema import ArraysSource, DigitsSource, FolderSource, ManifestSource, Source
from anybind.data.named import NAMED_SOURCES, named_source
from anybind.errors import ConfigError


def parse_sources(
    specs: list[str], *, modality: str | None, pattern: str, keys: list[str], preprocess: str
) -> list[Source]:
    sources: list[Source] = []
    for spec in specs:
        path = Path(spec)
        kind, _, rest = spec.partition(":")
        if kind in NAMED_SOURCES and rest:
            sources.append(named_source(kind, rest)[0])
        elif spec.startswith("digits:"):
            split = spec.split(":", 1)[1]
            if split not in ("train", "test"):
                raise ConfigError(f"'{spec}': the digits split is train or test", key="--data")
            sources.append(DigitsSource(split=split))  # type: ignore[arg-type]
        elif path.suffix.lower() in (".yaml", ".yml"):
            try:
                raw = yaml.safe_load(path.read_text(encoding="utf-8"))
                raw = raw if isinstance(raw, list) else [raw]
                sources += TypeAdapter(list[Source]).validate_python(raw)
            except UnicodeDecodeError as exc:
                raise ConfigError(f"not UTF-8 text (byte {exc.start + 1})", file=spec) from None
            except (OSError, yaml.YAMLError, ValidationError) as exc:
                raise ConfigError(str(exc), file=spec) from None
        elif path.suffix.lower() in (".jsonl", ".ndjson", ".csv", ".parquet", ".pq"):
            sources.append(ManifestSource(path=spec))
        elif path.suffix.lower() == ".npz":
            mapping = dict(k.split("=", 1) for k in keys if "=" in k)
            if not mapping:
                raise ConfigError("an .npz needs --keys modality=array", key="--keys")
            sources.append(ArraysSource(path=spec, keys=mapping, preprocess=preprocess))  # type: ignore[arg-type]
        elif path.is_dir():
            if not modality:
                raise ConfigError("a folder needs --modality", key="--modality")
            sources.append(FolderSource(path=spec, modality=modality, pattern=pattern))
        else:
            raise ConfigError(
                f"cannot tell what kind of data '{spec}' is (not found, or an unknown suffix)",
                key="--data",
            )
    return sources
