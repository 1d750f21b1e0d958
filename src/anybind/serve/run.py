"""Build the service of a run and an indexed collection."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from anybind.checkpoint import WEIGHTS, file_sha256
from anybind.search.engine import Searcher
from anybind.serve.app import Limits, create_app
from anybind.space import Space, load_space


def build_app(
    run_dir: str | Path,
    index: str | Path,
    *,
    adapter: str | Path | None = None,
    limits: Limits | None = None,
    api_key: str | None = None,
) -> FastAPI:
    space: Space
    if adapter is None:
        space = load_space(run_dir)
    else:
        from anybind.adapt.store import load_adapted

        space = load_adapted(adapter, run_dir)[0]
    sha = file_sha256(Path(run_dir) / WEIGHTS)
    searcher = Searcher.open(space, index, weights_sha256=sha)
    return create_app(searcher, limits, api_key)
