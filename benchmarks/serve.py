"""`anybind serve` under load: concurrent clients against a real uvicorn on a loopback port.

    .venv/bin/python benchmarks/serve.py [--run runs/demo] [--requests 1000] [--clients 50]

Builds (once, in a scratch folder) an indexed collection of the run's evaluation data, starts
`anybind serve` on a free loopback port in its own process (as it is deployed), and sends
`requests` text searches from `clients` concurrent HTTP clients (httpx) in this process.
Reports errors, p50/p99 latency and requests/s; then the same queries embedded and searched
in-process in batches of 32 (no HTTP), before the server starts and after it stops, for the
throughput ratio against the faster of the two; and the same number of GET /health (no work
at all) as the HTTP floor of this client and server. Bars: no error; throughput ≥ 0.7× the
in-process batches.

When `wrk` is installed (Debian's `wrk`, a C load generator), the same search is also driven by
it for `--wrk-seconds` with the same number of connections: the Python client costs the server
most of a core, and wrk much less, so its rate is closer to what the server can do. The
in-process rate is also measured on one thread (torch and FAISS), the share of the machine
the server gets while a client holds the other core.
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


#: sentence-length queries (16–20 words), as people type them, for `--queries sentences`
SENTENCES = [
    "a clear recording of a person saying the number {} slowly in a quiet room with no music",
    "the handwritten digit {} drawn with a black pen on white paper, a little slanted to the right",
    "someone on the phone reading out the number {} twice, with some noise from the street behind",
    "a scanned form where the box holds the digit {} written quickly by hand in blue ink",
]


#: words that make each query its own (people rarely send one text twice, and a repeated text
#: would measure a cache, not a search)
WORDS = (
    "quiet", "loud", "slow", "quick", "clear", "noisy", "small", "large", "bold", "thin",
    "neat", "messy", "old", "new", "dark", "light", "soft", "sharp", "faint", "bright",
    "early", "late", "tidy", "rough", "calm", "busy", "plain", "fancy", "short", "long",
    "warm", "cold",
)  # fmt: skip


def queries(run: Path, n: int, kind: str = "short") -> list[str]:
    """`n` different queries: the demo's prompts (or sentences) each with two seeded words."""
    import random

    from anybind.space import load_space

    config = load_space(run).config
    names = config.data.class_names or ["thing"]
    templates = config.eval.default_templates if kind == "short" else SENTENCES
    rng, out, seen = random.Random(0), [], set()
    while len(out) < n:
        words = " ".join(rng.sample(WORDS, 2))
        text = f"{words} {rng.choice(templates).format(rng.choice(names))}"
        if text not in seen:
            seen.add(text)
            out.append(text)
    return out


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


def in_process(run: Path, emb: Path, texts: list[str], threads: int | None = None) -> float:
    """Queries/s of the same searches in this process, in batches of 32 (on `threads` torch
    and FAISS threads when given)."""
    import faiss
    import torch

    from anybind.search.engine import Searcher
    from anybind.space import load_space

    before = torch.get_num_threads(), faiss.omp_get_max_threads()
    if threads is not None:
        torch.set_num_threads(threads)
        faiss.omp_set_num_threads(threads)
    try:
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
    finally:
        torch.set_num_threads(before[0])
        faiss.omp_set_num_threads(before[1])


WRK_SCRIPT = """local bodies = {{ {bodies} }}
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", nil, {{["Content-Type"] = "application/json"}}, bodies[i])
end
"""


def wrk_rate(
    port: int, clients: int, seconds: int, root: Path, texts: list[str]
) -> dict[str, float] | None:
    """Requests/s and non-2xx answers of `wrk` POSTing the searches of `texts` in turn; None
    without wrk."""
    import re
    import shutil
    import subprocess

    if shutil.which("wrk") is None:
        return None
    script = root / "search.lua"
    bodies = ", ".join(f"[==[{json.dumps({'text': t, 'k': 10})}]==]" for t in texts)
    script.write_text(WRK_SCRIPT.format(bodies=bodies))
    url = f"http://127.0.0.1:{port}/search"
    args = ["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "-s", str(script), url]
    out = subprocess.run(args, capture_output=True, text=True, timeout=seconds + 60).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    if rate is None or total is None:
        raise SystemExit(f"could not read wrk's output:\n{out}")
    return {"requests_per_s": float(rate.group(1)), "requests": int(total.group(1)),
            "non_2xx": int(bad.group(1)) if bad else 0}  # fmt: skip


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: Path, emb: Path, port: int, workers: int | None = None):  # noqa: ANN201
    import subprocess
    import sys

    import httpx

    anybind = Path(sys.executable).with_name("anybind")
    extra = ["--workers", str(workers)] if workers else []
    proc = subprocess.Popen([str(anybind), "serve", str(run), "--index", str(emb),
                             "--port", str(port), *extra], stdout=subprocess.DEVNULL)  # fmt: skip
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
    parser.add_argument("--wrk-seconds", type=int, default=10)
    parser.add_argument("--workers", type=int, help="the server's --workers (default: its own)")
    parser.add_argument("--queries", choices=["short", "sentences"], default="short",
                        help="the demo's 1–3 word prompts, or 16–20 word sentences")  # fmt: skip
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        emb = collection(args.run, Path(tmp))
        texts = queries(args.run, args.requests, args.queries)
        direct_before = in_process(args.run, emb, texts)  # and again after: this VM drifts
        port = free_port()
        server = start_server(args.run, emb, port, args.workers)
        try:
            asyncio.run(load(port, texts[:100], args.clients))  # warm-up
            latencies, codes, wall = asyncio.run(load(port, texts, args.clients))
            _, floor_codes, floor_wall = asyncio.run(load(port, texts, args.clients, "/health"))
            wrk = wrk_rate(port, args.clients, args.wrk_seconds, Path(tmp), texts)
        finally:
            server.terminate()
            server.wait(30)
        direct_after = in_process(args.run, emb, texts)
        direct = max(direct_before, direct_after)  # the ratio against the faster of the two
        one_thread = in_process(args.run, emb, texts, threads=1)
    result = {
        "requests": len(codes), "clients": args.clients,
        "errors": sum(c != 200 for c in codes),
        "p50_ms": 1000 * float(np.percentile(latencies, 50)),
        "p99_ms": 1000 * float(np.percentile(latencies, 99)),
        "requests_per_s": len(codes) / wall, "in_process_per_s": direct,
        "in_process_before_after_per_s": [direct_before, direct_after],
        "ratio": (len(codes) / wall) / direct,
        "health_requests_per_s": len(floor_codes) / floor_wall,
        "in_process_one_thread_per_s": one_thread, "wrk": wrk,
    }  # fmt: skip
    if wrk is not None:
        result["wrk"]["ratio"] = wrk["requests_per_s"] / direct
        result["wrk"]["ratio_to_one_thread"] = wrk["requests_per_s"] / one_thread
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
