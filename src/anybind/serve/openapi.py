"""The OpenAPI description of the routes that skip FastAPI's per-request machinery.

`POST /search` and `POST /embed` are plain Starlette routes: FastAPI's dependency solving and
exit stack cost 0.1 ms of the event loop's time a request, a quarter of what the loop spends on
a search (BENCHMARKS "Using a space"). FastAPI describes only its own routes, so these two are
added to its schema here, with their JSON bodies (from the pydantic models the handlers
validate with) and their multipart forms.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

ERRORS = {
    "401": "missing or wrong API key",
    "413": "the body or a text is too large",
    "415": "not JSON or multipart, or a file no modality reads",
    "422": "an unknown modality or target, a bad value, an undecodable upload",
}


def post_route(summary: str, body: type[BaseModel], form: dict[str, str]) -> dict[str, Any]:
    """A POST operation whose body is `body` as JSON, or a multipart `file` with `form` fields
    (name → description)."""
    fields = {"file": {"type": "string", "format": "binary"}}
    fields |= {name: {"type": "string", "description": text} for name, text in form.items()}
    content = {
        "application/json": {"schema": body.model_json_schema()},
        "multipart/form-data": {
            "schema": {"type": "object", "properties": fields, "required": ["file"]}
        },  # fmt: skip
    }
    responses = {"200": {"description": "OK", "content": {"application/json": {}}}}
    responses |= {code: {"description": text} for code, text in ERRORS.items()}
    return {"post": {"summary": summary, "requestBody": {"required": True, "content": content},
                     "responses": responses}}  # fmt: skip


def describe(app: FastAPI, plain: dict[str, dict[str, Any]]) -> None:
    """`app`'s schema, with the operations of the plain routes `plain` (path → operation)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            schema["paths"].update(plain)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
