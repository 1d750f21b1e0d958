"""The HTTP service over a space and an indexed collection (`anybind serve`).

    GET  /                the web page (anybind.serve.page)
    GET  /health          status, modalities, counts
    POST /embed           {"modality": "text", "inputs": ["…"]} or a multipart file → vectors
    POST /search          {"text": "…", "to": ["image"], "k": 10} or a multipart file → hits
    GET  /items/{id}      the stored file of an item (`?modality=` when several hold the id)
    GET  /docs, /openapi.json

Every bad request is a 4xx with a message: unknown modality, undecodable upload, empty or huge
text, a wrong content type, an oversize body, k or batch out of range. With an API key every
route but the page and /health needs `Authorization: Bearer KEY`.
"""

from __future__ import annotations

import hmac
import inspect
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import faiss
import orjson
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from anybind.errors import AnybindError, DataError
from anybind.modalities.base import EncodedFile
from anybind.search.engine import Searcher
from anybind.serve.batcher import Batcher, run_group
from anybind.serve.openapi import describe, post_route
from anybind.serve.page import PAGE


@dataclass
class Limits:
    max_k: int = 100
    max_batch: int = 64
    max_text_chars: int = 2000
    max_body_bytes: int = 10 * 1024 * 1024
    window_s: float = 0.005
    workers: int | None = None  # model threads; None: from the device and the cores


class EmbedRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    modality: str = "text"
    inputs: list[str] = Field(min_length=1)


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    text: str | list[str]
    to: str | list[str] | None = None
    k: int = 10


def create_app(
    searcher: Searcher, limits: Limits | None = None, api_key: str | None = None
) -> FastAPI:
    limits = limits or Limits()
    batcher = _batcher(searcher, limits)
    targets = searcher.collection.modalities
    items = _item_paths(searcher)

    @asynccontextmanager
    async def lifespan(_: FastAPI):  # noqa: ANN202
        for name in targets:
            searcher.index(name)  # load every index before the first request
        # a model thread's forward pass gives up the GIL between its C calls and, with the
        # default 5 ms switch interval, waits that long for the event loop to hand it back:
        # 1 ms measured best (benchmarks/serve.py, BENCHMARKS "Using a space")
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, 0.001))
        before = torch.get_num_threads()
        yield
        sys.setswitchinterval(interval)
        await batcher.close()
        torch.set_num_threads(before)  # the model threads' count is also torch's default

    app = FastAPI(title="anybind", lifespan=lifespan, **_NO_TELEMETRY)
    app.state.batcher = batcher

    app.add_middleware(Guard, limits=limits, api_key=api_key)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> str:
        return PAGE

    @app.get("/health")
    async def health() -> dict[str, Any]:
        return {"status": "ok", "modalities": list(searcher.space.towers), "targets": targets,
                "counts": searcher.collection.manifest["counts"]}  # fmt: skip

    async def embed(request: Request) -> JSONResponse:
        modality, inputs = await _inputs(request, searcher, limits, EmbedRequest)
        vectors = await _submit(batcher, modality, inputs)
        return FastJSON({"modality": modality, "embeddings": vectors.tolist()})

    async def search(request: Request) -> JSONResponse:
        modality, inputs, to, k = await _search_inputs(request, searcher, limits, targets)
        per_input = await _submit(batcher, modality, inputs, tuple(to), k)
        return FastJSON({"results": _results(modality, inputs, per_input)})

    # the two routes that do the work are plain Starlette routes (anybind.serve.openapi)
    app.add_route("/embed", embed, methods=["POST"])
    app.add_route("/search", search, methods=["POST"])
    describe(app, _PLAIN_ROUTES)

    @app.get("/items/{item_id}")
    async def item(item_id: str, modality: str | None = None) -> FileResponse:
        found = {m: p for m, p in items.get(item_id, {}).items() if modality in (None, m)}
        if not found:
            raise HTTPException(404, f"no stored file for item '{item_id}'")
        if len(found) > 1:
            raise HTTPException(400, f"item '{item_id}' has files in {sorted(found)}: ?modality=")
        path = Path(next(iter(found.values())))
        if not path.is_file():
            raise HTTPException(404, f"the file of item '{item_id}' is gone")
        return FileResponse(path)

    return app


_FILE_MODALITY = "the modality that reads the file (default: by suffix)"
_PLAIN_ROUTES = {
    "/embed": post_route("Embed inputs of one modality", EmbedRequest,
                         {"modality": _FILE_MODALITY}),
    "/search": post_route("Search the collection with a text or a file", SearchRequest,
                          {"modality": _FILE_MODALITY,
                           "to": "the modality to search (default: every indexed one)",
                           "k": "how many hits (default 10)"}),
}  # fmt: skip


def _results(modality: str, inputs: list[Any], per_input: list[Any]) -> list[dict[str, Any]]:
    """The body of a search answer: per input, its hits in each target with their file links."""
    results = []
    for value, found in zip(inputs, per_input, strict=True):
        shown = value if isinstance(value, str) else value.name
        per = {}
        for target, hits in found.items():
            per[target] = [
                {**h.as_dict(), "url": f"/items/{h.id}" if h.path else None} for h in hits
            ]
        results.append({"query": shown, "modality": modality, "results": per})
    return results


def _batcher(searcher: Searcher, limits: Limits) -> Batcher:
    """The dynamic batcher over the searcher, on its model threads."""
    workers, threads = model_threads(searcher, limits.workers)
    return Batcher(
        partial(run_group, searcher),
        ThreadPoolExecutor(workers, "anybind-model", initializer=_use_threads, initargs=(threads,)),
        limits.window_s,
        limits.max_batch,
        workers,
        spare=1 if workers == 1 else 0,  # one worker: the next batch gathered while it computes
    )


def model_threads(searcher: Searcher, workers: int | None) -> tuple[int, int | None]:
    """How many batches compute at once, and on how many torch and FAISS threads each (None:
    as they are). On a GPU one; on CPU one per core up to four, each on its share of the cores:
    a small batch's forward pass splits badly across threads (two MiniLM workers on one thread
    each serve a third more than one worker on two, BENCHMARKS "Using a space")."""
    on_gpu = any(p.device.type != "cpu" for p in searcher.space.parameters())
    if on_gpu:
        return workers or 1, None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    workers = workers or min(cores, 4)
    return workers, max(1, cores // workers)


def _use_threads(threads: int | None) -> None:
    """In each model thread as it starts: its torch and FAISS (OpenMP) thread counts."""
    if threads is not None:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)


#: FastAPI's native OpenTelemetry (0.165+) asks the global providers on every request, which
#: reads the environment each time: that cost half of a `GET /health` here. Off, unless the
#: caller instruments the app itself.
_NO_TELEMETRY: dict[str, Any] = (
    {"telemetry": {"tracing": False, "metrics": False, "logs": False}}
    if "telemetry" in inspect.signature(FastAPI.__init__).parameters
    else {}
)


class FastJSON(JSONResponse):
    """orjson: five times faster than the standard library's json on a page of hits."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status)


async def _submit(
    batcher: Batcher, modality: str, inputs: list[Any], to: tuple[str, ...] = (), k: int = 0
) -> Any:
    try:
        return await batcher.submit(modality, inputs, to, k)
    except AnybindError as exc:
        raise HTTPException(422, str(exc)) from None


class Guard:
    """A pure ASGI middleware (no per-request task, unlike `@app.middleware`): a body larger
    than the limit is a 413, a missing or wrong API key a 401, an AnybindError a 422."""

    def __init__(self, app: Any, limits: Limits, api_key: str | None) -> None:
        self.app, self.limits, self.api_key = app, limits, api_key

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        size = headers.get("content-length")
        error = None
        if size is not None and (not size.isdigit() or int(size) > self.limits.max_body_bytes):
            error = _error(413, f"the request body is over {self.limits.max_body_bytes} bytes")
        elif self.api_key and scope["path"] not in ("/", "/health"):
            given = headers.get("authorization", "")
            if not (given.startswith("Bearer ") and hmac.compare_digest(given[7:], self.api_key)):
                error = _error(401, "missing or wrong API key (Authorization: Bearer KEY)")
        if error is not None:
            await error(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        except AnybindError as exc:
            await _error(422, str(exc))(scope, receive, send)


def _item_paths(searcher: Searcher) -> dict[str, dict[str, str]]:
    """id → modality → stored file, from the collection's tables (only these are served)."""
    out: dict[str, dict[str, str]] = {}
    for name in searcher.collection.modalities:
        table = searcher.collection.modality(name).table
        for i, p in zip(table.column("id").to_pylist(), table.column("path").to_pylist(),
                        strict=True):  # fmt: skip
            if p:
                out.setdefault(i, {})[name] = p
    return out


def _check_modality(searcher: Searcher, modality: str) -> str:
    if modality not in searcher.space.towers:
        raise HTTPException(422, f"unknown modality '{modality}' (the space has "
                                 f"{', '.join(searcher.space.towers)})")  # fmt: skip
    return modality


def _check_texts(texts: list[str], limits: Limits) -> list[str]:
    if not 1 <= len(texts) <= limits.max_batch:
        raise HTTPException(422, f"send 1 to {limits.max_batch} inputs, not {len(texts)}")
    for t in texts:
        if not t.strip():
            raise HTTPException(422, "an empty text is not a query")
        if len(t) > limits.max_text_chars:
            raise HTTPException(413, f"a text is over {limits.max_text_chars} characters")
    return texts


async def _upload(request: Request, searcher: Searcher) -> tuple[str, EncodedFile, Any]:
    """The uploaded file, the modality that reads its suffix, and the other form fields."""
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(422, "a multipart request needs a 'file' field")
    name = upload.filename or "upload"
    data = await upload.read()
    if not data:
        raise HTTPException(422, f"the uploaded file '{name}' is empty")
    file = EncodedFile(data, name)
    requested = form.get("modality")
    try:
        modality = searcher.modality_for_suffix(
            file.suffix, requested if isinstance(requested, str) and requested else None
        )
    except DataError as exc:
        raise HTTPException(422, str(exc)) from None
    if modality is None:
        raise HTTPException(415, f"no modality of the space reads '{file.suffix or name}' files")
    return modality, file, form


async def _inputs(
    request: Request, searcher: Searcher, limits: Limits, model: type
) -> tuple[str, list]:
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        modality, file, _ = await _upload(request, searcher)
        return modality, [file]
    body = await _json(request, model)
    return _check_modality(searcher, body.modality), _check_texts(body.inputs, limits)


async def _search_inputs(
    request: Request, searcher: Searcher, limits: Limits, targets: list[str]
) -> tuple[str, list, list[str], int]:
    kind = request.headers.get("content-type", "")
    if kind.startswith("multipart/form-data"):
        modality, file, form = await _upload(request, searcher)
        inputs: list[Any] = [file]
        to_raw, k_raw = form.get("to"), form.get("k", "10")
        to = [str(to_raw)] if to_raw else list(targets)
        if not isinstance(k_raw, str) or not k_raw.strip().lstrip("-").isdigit():
            raise HTTPException(422, f"k must be a whole number, not {k_raw!r}")
        k = int(k_raw)
    else:
        body = await _json(request, SearchRequest)
        texts = [body.text] if isinstance(body.text, str) else body.text
        modality, inputs = searcher.text_tower(), _check_texts(texts, limits)
        to = [body.to] if isinstance(body.to, str) else list(body.to or targets)
        k = body.k
    unknown = [t for t in to if t not in targets]
    if unknown or not to:
        raise HTTPException(422, f"cannot search {unknown or to}: the index holds {targets}")
    if not 1 <= k <= limits.max_k:
        raise HTTPException(422, f"k must be between 1 and {limits.max_k}, not {k}")
    return modality, inputs, to, k


async def _json(request: Request, model: type) -> Any:
    kind = request.headers.get("content-type", "")
    if not kind.startswith("application/json"):
        raise HTTPException(415, "send application/json (or multipart/form-data with a file)")
    try:
        return model.model_validate_json(await request.body())
    except ValueError as exc:
        first = exc.errors()[0] if hasattr(exc, "errors") else {"msg": str(exc), "loc": ()}
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise HTTPException(422, f"{where + ': ' if where else ''}{first['msg']}") from None
