"""Build the service of a run and an indexed collection."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from anybind.search.engine import Searcher
from anybind.serve.app import Limits, create_app


def build_app(
    run_dir: str | Path,
    index: str | Path,
    *,
    adapter: str | Path | None = None,
    limits: Limits | None = None,
    api_key: str | None = None,
) -> FastAPI:
    return create_app(Searcher.for_run(run_dir, index, adapter=adapter), limits, api_key)
