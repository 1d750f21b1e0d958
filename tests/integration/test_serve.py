"""`anybind serve`: every endpoint, every bad request a 4xx, the API key, dynamic batching of
concurrent requests on a real uvicorn, and a fuzz of the endpoints that finds no 5xx."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import CLASS_NAMES, tiny_config, tiny_images
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from typer.testing import CliRunner

from anybind.api import embed
from anybind.cli.main import app as cli
from anybind.config import config_from_dict
from anybind.recipes.index import index_collection
from anybind.recipes.train import train
from anybind.search.index import IndexParams
from anybind.serve.app import Limits
from anybind.serve.run import build_app

KEY = "k" * 24


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A trained tiny run, and an indexed collection of 24 PNG files with captions."""
    from conftest import write_tiny

    root = tmp_path_factory.mktemp("serve")
    npz = write_tiny(root / "tiny.npz", 96)
    train(config_from_dict(tiny_config(npz, **{"optim.steps": 60})), root / "run", progress=False)
    images, labels = tiny_images(24, seed=2)
    (root / "png").mkdir()
    rows = []
    for i, (x, y) in enumerate(zip(images, labels, strict=True)):
        Image.fromarray((x * 255).astype(np.uint8)).save(root / "png" / f"{i}.png")
        rows.append({"id": f"p{i}", "image": f"png/{i}.png", "caption": f"a picture of "
                     f"{CLASS_NAMES[y]}", "label": int(y)})  # fmt: skip
    (root / "items.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    source = {"type": "manifest", "path": str(root / "items.jsonl"),
              "columns": {"image": "image", "text": "caption"}}  # fmt: skip
    embed(root / "run", [source_of(source)], root / "emb")
    index_collection(root / "emb", IndexParams("flat"))
    return root / "run", root / "emb", root


def source_of(raw: dict):  # noqa: ANN201
    from pydantic import TypeAdapter

    from anybind.config.schema import Source

    return TypeAdapter(Source).validate_python(raw)


@pytest.fixture(scope="module")
def client(served):  # noqa: ANN001, ANN201
    run, emb, _ = served
    with TestClient(build_app(run, emb, limits=Limits(max_body_bytes=200_000))) as c:
        yield c


def test_health_names_the_modalities_and_counts(client) -> None:
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["counts"] == {"image": 24, "text": 24}
    assert set(body["targets"]) == {"image", "text"}


def test_the_openapi_schema_describes_every_route_with_its_bodies(client) -> None:
    """/search and /embed are plain routes: the schema still has them, with the JSON bodies
    the handlers validate and the multipart forms they read."""
    schema = client.get("/openapi.json").json()
    assert {"/health", "/search", "/embed", "/items/{item_id}"} <= set(schema["paths"])
    search = schema["paths"]["/search"]["post"]["requestBody"]["content"]
    assert set(search["application/json"]["schema"]["properties"]) == {"text", "to", "k"}
    assert set(search["multipart/form-data"]["schema"]["properties"]) == {
        "file", "modality", "to", "k"}  # fmt: skip
    embed = schema["paths"]["/embed"]["post"]["requestBody"]["content"]
    assert set(embed["application/json"]["schema"]["properties"]) == {"modality", "inputs"}
    assert client.get("/docs").status_code == 200
    assert client.get("/search").status_code == 405  # a POST route


def test_a_sentence_finds_images_of_its_class_with_links_to_their_files(client, served) -> None:
    response = client.post("/search", json={"text": "a picture of two", "to": "image", "k": 3})
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    hits = result["results"]["image"]
    assert [h["class"] for h in hits] == ["two"] * 3
    item = client.get(hits[0]["url"])
    number = hits[0]["id"].removeprefix("p")
    assert item.status_code == 200
    assert item.content == (served[2] / "png" / f"{number}.png").read_bytes()


def test_an_uploaded_image_finds_itself_first_in_every_modality_asked(client, served) -> None:
    png = (served[2] / "png" / "5.png").read_bytes()
    response = client.post("/search", files={"file": ("q.png", png, "image/png")},
                           data={"k": "2"})  # fmt: skip
    assert response.status_code == 200, response.text
    (result,) = response.json()["results"]
    assert result["modality"] == "image" and set(result["results"]) == {"image", "text"}
    assert result["results"]["image"][0]["id"] == "p5"
    assert result["results"]["image"][0]["score"] == pytest.approx(1.0, abs=1e-3)


def test_embed_returns_the_space_embedding(client, served) -> None:
    from anybind.search.engine import Searcher
    from anybind.space import load_space

    response = client.post("/embed", json={"modality": "text", "inputs": ["a picture of one"]})
    assert response.status_code == 200, response.text
    got = np.array(response.json()["embeddings"])
    expected = Searcher.open(load_space(served[0]), served[1]).embed("text", ["a picture of one"])
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "status", "says"),
    [
        (
            {"json": {"modality": "video", "inputs": ["x"]}, "url": "/embed"},
            422,
            "unknown modality",
        ),
        ({"json": {"text": "", "k": 3}}, 422, "empty text"),
        ({"json": {"text": "x" * 3000}}, 413, "characters"),
        ({"json": {"text": "one", "k": 0}}, 422, "k must be"),
        ({"json": {"text": "one", "k": 5000}}, 422, "k must be"),
        ({"json": {"text": "one", "to": "audio"}}, 422, "cannot search"),
        ({"json": {"text": "one", "bogus": 1}}, 422, "bogus"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 422, ""),
        ({"content": b"text=one", "headers": {"content-type": "text/plain"}}, 415, "json"),
        ({"files": {"file": ("q.png", b"\x89PNG broken", "image/png")}}, 422, "q.png"),
        ({"files": {"file": ("q.exe", b"MZ", "application/octet-stream")}}, 415, ".exe"),
        ({"files": {"file": ("q.png", b"", "image/png")}}, 422, "empty"),
        ({"files": {"file": ("q.png", b"0" * 300_000, "image/png")}}, 413, "bytes"),
        ({"files": {"file": ("q.png", b"x", "image/png")}, "data": {"k": "many"}}, 422, "k"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(client, kwargs, status, says) -> None:
    url = kwargs.pop("url", "/search")
    response = client.post(url, **kwargs)
    assert response.status_code == status, response.text
    assert says.lower() in response.json()["detail"].lower()
    assert client.get("/health").status_code == 200  # and it keeps serving


def test_items_serves_only_the_collection_files(client) -> None:
    assert client.get("/items/p0").status_code == 200
    assert client.get("/items/nope").status_code == 404
    assert client.get("/items/..%2F..%2Fetc%2Fpasswd").status_code == 404


def test_an_api_key_guards_every_route_but_the_page_and_health(served) -> None:
    run, emb, _ = served
    with TestClient(build_app(run, emb, api_key=KEY)) as c:
        assert c.get("/health").status_code == 200 and c.get("/").status_code == 200
        assert c.post("/search", json={"text": "one"}).status_code == 401
        wrong = {"Authorization": "Bearer " + "x" * 24}
        assert c.post("/search", json={"text": "one"}, headers=wrong).status_code == 401
        right = {"Authorization": f"Bearer {KEY}"}
        assert c.post("/search", json={"text": "one"}, headers=right).status_code == 200


def test_a_non_loopback_bind_without_an_api_key_refuses_to_start(served) -> None:
    run, emb, root = served
    done = CliRunner().invoke(cli, ["serve", str(run), "--index", str(emb), "--host", "0.0.0.0"])
    assert done.exit_code == 2 and "--api-key-file" in done.output
    (root / "short.key").write_text("abc")
    done = CliRunner().invoke(cli, ["serve", str(run), "--index", str(emb), "--host", "0.0.0.0",
                                    "--api-key-file", str(root / "short.key")])  # fmt: skip
    assert done.exit_code == 2 and "at least 16" in done.output


@pytest.mark.slow
def test_concurrent_requests_on_a_real_server_are_batched_and_all_answered(served) -> None:
    """200 searches from 50 concurrent clients on uvicorn at a loopback port: every one
    answered, in fewer forward passes than requests (dynamic batching)."""
    import httpx
    import uvicorn

    run, emb, _ = served
    app = build_app(run, emb, limits=Limits(window_s=0.02))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:  # readiness, not timing: the flag uvicorn sets once bound
            thread.join(0.05)
            assert thread.is_alive(), "the server stopped before it started"
        port = server.servers[0].sockets[0].getsockname()[1]

        async def clients() -> list[int]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:

                async def one(i: int) -> int:
                    codes = []
                    for j in range(4):
                        query = {"text": f"a picture of {CLASS_NAMES[(i + j) % 4]}", "k": 5}
                        codes.append((await http.post("/search", json=query)).status_code)
                    return codes

                return [c for cs in await asyncio.gather(*(one(i) for i in range(50))) for c in cs]

        codes = asyncio.run(clients())
    finally:
        server.should_exit = True
        thread.join(30)
    assert codes == [200] * 200
    stats = app.state.batcher.stats
    assert stats.items == 200 and stats.batches < 200 and stats.largest > 1


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(["/search", "/embed", "/items/p1", "/health"]),
    body=st.one_of(
        st.binary(max_size=200),
        st.dictionaries(st.sampled_from(["text", "to", "k", "modality", "inputs", "x"]),
                        st.one_of(st.none(), st.integers(-5, 5000), st.text(max_size=30),
                                  st.lists(st.text(max_size=10), max_size=3)),
                        max_size=4).map(lambda d: json.dumps(d).encode()),
    ),
    kind=st.sampled_from(["application/json", "text/plain", "multipart/form-data; boundary=x", ""]),
)  # fmt: skip
def test_no_request_gets_a_5xx(client, path, body, kind) -> None:
    method = client.get if path.startswith(("/items", "/health")) else client.post
    kwargs = {} if method == client.get else {"content": body, "headers": {"content-type": kind}}
    assert method(path, **kwargs).status_code < 500


def test_serving_sets_the_model_threads_and_gives_them_back(served) -> None:
    """On CPU each of the model threads runs on its share of the cores while the app serves;
    the process's torch and FAISS thread counts are as before once it stops."""
    import faiss
    import torch

    from anybind.search.engine import Searcher
    from anybind.serve.app import model_threads

    run, emb, _ = served
    searcher = Searcher.for_run(run, emb)
    cores = len(os.sched_getaffinity(0))
    workers, threads = model_threads(searcher, None)
    assert (workers, threads) == (min(cores, 4), max(1, cores // min(cores, 4)))
    assert model_threads(searcher, 3) == (3, max(1, cores // 3))

    def new_thread_counts() -> tuple[int, int]:
        out: list[tuple[int, int]] = []
        t = threading.Thread(target=lambda: out.append(counts()))
        t.start()
        t.join()
        return out[0]

    def counts() -> tuple[int, int]:
        return torch.get_num_threads(), faiss.omp_get_max_threads()

    before = new_thread_counts()
    app = build_app(run, emb)
    assert app.state.batcher.workers == workers
    assert app.state.batcher.spare == (1 if workers == 1 else 0)
    with TestClient(app) as c:
        assert c.post("/search", json={"text": "a picture of two", "k": 3}).status_code == 200
        assert app.state.batcher.executor.submit(counts).result() == (threads, threads)
    assert new_thread_counts() == before
