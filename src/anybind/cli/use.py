"""`anybind embed`, `index`, `search`: put a collection into a space and query it."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from anybind.cli.common import console, friendly_errors


@friendly_errors
def embed_command(
    run_dir: Path = typer.Argument(..., help="A run folder made by `anybind train`."),
    data: list[str] = typer.Option(
        ..., "--data", help="The collection: a manifest, an .npz, a folder, a YAML, digits:test."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the embeddings into."),
    modality: str = typer.Option(None, "--modality", help="Modality of a folder's files."),
    pattern: str = typer.Option(r"^(?P<label>[^_]+)_", "--pattern", help="Label regex (folder)."),
    keys: list[str] = typer.Option(None, "--keys", help="For .npz: modality=array."),
    preprocess: str = typer.Option("none", "--preprocess", help="none or mnist_to_uci."),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="Samples per forward pass."),
    part_size: int = typer.Option(10_000, "--part-size", min=1, help="Samples per shard."),
    dtype: str = typer.Option("float16", "--dtype", help="float16 or float32."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, …"),
    adapter: Path = typer.Option(None, "--adapter", help="Embed with this adapter applied."),
    workers: int = typer.Option(0, "--workers", min=0, help="DataLoader worker processes."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable samples."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Embed every sample of a collection, every modality it holds, into resumable shards."""
    from anybind.api import embed

    manifest = embed(
        run_dir, data, out, modality=modality, pattern=pattern, keys=keys or [],
        preprocess=preprocess, batch_size=batch_size, part_size=part_size, dtype=dtype,
        device=device, adapter=adapter, workers=workers, skip_bad=skip_bad, progress=not quiet,
    )  # fmt: skip
    if manifest:
        counts = ", ".join(f"{n} {m}" for m, n in manifest["counts"].items())
        console.print(f"embedded {counts} into {out} ({manifest['skipped']} skipped)")


@friendly_errors
def index_command(
    emb_dir: Path = typer.Argument(..., help="A folder made by `anybind embed`."),
    kind: str = typer.Option("flat", "--kind", help="flat (exact), ivf or hnsw."),
    metric: str = typer.Option("ip", "--metric", help="ip (inner product = cosine)."),
    nlist: int = typer.Option(None, "--nlist", min=1, help="ivf: lists (default ≈ 4·√N)."),
    nprobe: int = typer.Option(None, "--nprobe", min=1, help="ivf: lists searched (tuned)."),
    m: int = typer.Option(None, "--m", min=2, help="hnsw: links per node (default 32)."),
    ef_search: int = typer.Option(None, "--ef-search", min=1, help="hnsw: efSearch (tuned)."),
    target_recall: float = typer.Option(
        0.95, "--target-recall", help="Tune nprobe / efSearch to this recall@10."
    ),
) -> None:
    """Build one FAISS index per modality beside the shards, with its measured recall."""
    from anybind.errors import ConfigError
    from anybind.recipes.index import index_collection
    from anybind.search.index import IndexParams

    if metric != "ip":
        raise ConfigError("only --metric ip (cosine on unit vectors) is supported", key="--metric")
    params = IndexParams(kind, nlist=nlist, nprobe=nprobe, m=m, ef_search=ef_search,
                         target_recall=target_recall)  # fmt: skip
    for name, info in index_collection(emb_dir, params).items():
        console.print(
            f"{name}: {info['kind']} over {info['vectors']} vectors in {info['build_seconds']} s,"
            f" recall@10 {info['recall_at_10']:.3f} ({json.dumps(info['params'])})"
        )


@friendly_errors
def search_command(
    run_dir: Path = typer.Argument(..., help="The run the collection was embedded with."),
    index: Path = typer.Option(..., "--index", help="A folder made by `anybind embed`/`index`."),
    text: list[str] = typer.Option(None, "--text", help="A text query (repeatable)."),
    files: list[Path] = typer.Option(
        None, "--file", help="A query file: image, audio… (repeatable)."
    ),
    to: str = typer.Option(..., "--to", help="The modality to search."),
    k: int = typer.Option(10, "-k", min=1, max=1000, help="Results per query."),
    adapter: Path = typer.Option(None, "--adapter", help="Query with this adapter applied."),
    json_out: bool = typer.Option(False, "--json", help="Print the results as JSON."),
    file_modality: str = typer.Option(
        None, "--modality", help="The modality of the --file queries, when several read it."
    ),
) -> None:
    """Search any modality of an embedded collection with text or files of any modality."""
    from anybind.api import search

    results = search(run_dir, index, text=text or [], files=files or [], to=to, k=k,
                     adapter=adapter, file_modality=file_modality)  # fmt: skip
    if json_out:
        typer.echo(json.dumps(results, indent=2))
        return
    for result in results:
        console.print(f"[bold]{result['query']}[/] → {to}", highlight=False)
        for rank, hit in enumerate(result["hits"], start=1):
            where = hit["path"] or hit["id"]
            label = f" ({hit['class']})" if hit["class"] else ""
            console.print(f"  {rank:>3}. {hit['score']:.4f} {escape(str(where))}{escape(label)}",
                          highlight=False)  # fmt: skip


LOOPBACK = ("127.0.0.1", "localhost", "::1")


@friendly_errors
def serve_command(
    run_dir: Path = typer.Argument(..., help="The run the collection was embedded with."),
    index: Path = typer.Option(..., "--index", help="A folder made by `anybind embed`/`index`."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (loopback by default)."),
    port: int = typer.Option(8000, "--port", min=0, max=65535, help="Port (0: any free one)."),
    api_key_file: Path = typer.Option(
        None, "--api-key-file", help="A file holding the bearer token clients must send."
    ),
    adapter: Path = typer.Option(None, "--adapter", help="Serve with this adapter applied."),
    max_k: int = typer.Option(100, "--max-k", min=1, max=1000, help="Largest k a request gets."),
    workers: int = typer.Option(
        None, "--workers", min=1, max=64, help="Batches computed at once (default: from the cores)."
    ),
) -> None:
    """Serve search and embedding over HTTP, with a web page at /."""
    import uvicorn

    from anybind.errors import ConfigError
    from anybind.serve.app import Limits
    from anybind.serve.run import build_app

    key = None
    if api_key_file is not None:
        key = api_key_file.read_text(encoding="utf-8").strip()
        if len(key) < 16:
            raise ConfigError("the API key must be at least 16 characters", key="--api-key-file")
    if host not in LOOPBACK and key is None:
        raise ConfigError(
            f"--host {host} exposes the service beyond this machine: pass --api-key-file "
            "(a bearer token clients must send), or bind 127.0.0.1",
            key="--host",
        )
    app = build_app(
        run_dir, index, adapter=adapter, limits=Limits(max_k=max_k, workers=workers), api_key=key
    )
    console.print(f"serving {index} on http://{host}:{port}/ (docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="warning")


@friendly_errors
def report_command(
    run_dir: Path = typer.Argument(..., help="A run folder made by `anybind train`."),
    data: list[str] = typer.Option(None, "--data", help="Evaluation data (default: data.eval)."),
    keys: list[str] = typer.Option(None, "--keys", help="For .npz: modality=array."),
    adapter: list[Path] = typer.Option(None, "--adapter", help="An adapter folder to include."),
    out: Path = typer.Option(None, "--out", help="The HTML file (default RUN_DIR/report.html)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """One self-contained HTML report on a run: curves, accuracy, retrieval, maps, geometry."""
    from anybind.recipes.html_report import build_report
    from anybind.recipes.source_specs import parse_sources

    sources = parse_sources(data or [], modality=None, pattern=r"^(?P<label>[^_]+)_",
                            keys=keys or [], preprocess="none")  # fmt: skip
    path = build_report(run_dir, sources=sources or None, adapters=adapter or [], out=out,
                        progress=not quiet)  # fmt: skip
    console.print(f"wrote {path}")
