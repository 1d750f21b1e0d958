"""`anybind serve` under load: concurrent clients against a real uvicorn on a loopback port.

    .venv/bin/python benchmarks/serve.py [--run runs/demo] [--requests 1000] [--clients 50]

Builds (once, in a scratch folder) an indexed collection of the run's evaluation data, starts
`anybind serve` on a free loopback port in its own process (as it is deployed), and sends
`requests` text searches from `clients` concurrent HTTP clients (httpx) in this process.
Reports errors, p50/p99 latency and requests/s;
then the same queries embedded and searched in-process in batches of 32 (no HTTP), for the
throughput ratio; and the same number of GET /health (no work at all) as the HTTP floor of this
client and server. Bars: no error; throughput ≥ 0.7× the in-process batches.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path

import numpy as np


def collection(run: Path, root: Path) -> Path:
    from anybind.api import embed
    from anybind.recipes.index import index_collection
    from anybind.search.index import IndexParams
    from anybind.space import load_space

    sources = load_space(run).config.data.eval
    embed(run, sources, root / "emb")
    index_collection(root / "emb", IndexParams("flat"))
    return root / "emb"


def queries(run: Path, n: int) -> list[str]:
    from anybind.space import load_space

    config = load_space(run).config
    names = config.data.class_names or ["thing"]
    templates = config.eval.default_templates
    return [templates[i % len(templates)].format(names[i % len(names)]) for i in range(n)]


async def load(
    port: int, texts: list[str], clients: int, path: str = "/search"
) -> tuple[list[float], list[int], float]:
    import httpx

    latencies: list[float] = []
    codes: list[int] = []
    work = iter(texts)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:

        async def client() -> None:
            for text in work:
                started = time.perf_counter()
                if path == "/search":
                    response = await http.post(path, json={"text": text, "k": 10})
                else:  # the HTTP floor: a route that does no work
                    response = await http.get(path)
                latencies.append(time.perf_counter() - started)
                codes.append(response.status_code)

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, codes, wall


def in_process(run: Path, emb: Path, texts: list[str]) -> float:
    from anybind.search.engine import Searcher
    from anybind.space import load_space

    searcher = Searcher.open(load_space(run), emb)
    targets = searcher.collection.modalities
    for t in targets:
        searcher.index(t)
    started = time.perf_counter()
    for i in range(0, len(texts), 32):
        vectors = searcher.embed("text", texts[i : i + 32])
        for t in targets:
            searcher.search(vectors, t, 10)
    return len(texts) / (time.perf_counter() - started)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, emb: Path, port: int):  # noqa: ANN201
    import subprocess
    import sys

    import httpx

    anybind = Path(sys.executable).with_name("anybind")
    proc = subprocess.Popen([str(anybind), "serve", str(run), "--index", str(emb),
                             "--port", str(port)], stdout=subprocess.DEVNULL)  # fmt: skip
    for _ in range(600):  # up to 60 s for the space and the indexes to load
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit("the server exited before it answered")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not answer within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=Path("runs/demo"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        emb = collection(args.run, Path(tmp))
        texts = queries(args.run, args.requests)
        port = free_port()
        server = start_server(args.run, emb, port)
        try:
            asyncio.run(load(port, texts[:100], args.clients))  # warm-up
            latencies, codes, wall = asyncio.run(load(port, texts, args.clients))
            _, floor_codes, floor_wall = asyncio.run(load(port, texts, args.clients, "/health"))
        finally:
            server.terminate()
            server.wait(30)
        direct = in_process(args.run, emb, texts)
    result = {
        "requests": len(codes), "clients": args.clients,
        "errors": sum(c != 200 for c in codes),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "requests_per_s": len(codes) / wall, "in_process_per_s": direct,
        "ratio": (len(codes) / wall) / direct,
        "health_requests_per_s": len(floor_codes) / floor_wall,
    }  # fmt: skip
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
