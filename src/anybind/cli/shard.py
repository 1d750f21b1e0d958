"""`anybind shard`: write sources into WebDataset tar shards with an index."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import console, friendly_errors


@friendly_errors
def shard_command(
    data: list[str] = typer.Argument(
        ..., help="Sources: manifests, folders, .npz files, digits:train, or a YAML of sources."
    ),
    out: Path = typer.Option(..., "--out", help="Folder to write the shards and index.json to."),
    samples_per_shard: int = typer.Option(1000, "--samples-per-shard", min=1),
    config: Path = typer.Option(
        None, "--config", help="Take the modalities and class names from this run config."
    ),
    modality: str = typer.Option(None, "--modality", help="Modality of a folder's files."),
    pattern: str = typer.Option(r"^(?P<label>[^_]+)_", "--pattern", help="Label regex (folder)."),
    keys: list[str] = typer.Option(None, "--keys", help="For .npz: modality=array."),
    check: bool = typer.Option(
        True, "--check/--no-check", help="Decode every sample first (a bad one is named)."
    ),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Leave bad samples out, counted."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Write the samples of any sources, with their original encoded bytes, into tar shards."""
    from anybind.recipes.shard import shard_sources
    from anybind.recipes.source_specs import parse_sources

    sources = parse_sources(
        data, modality=modality, pattern=pattern, keys=keys or [], preprocess="none"
    )
    modalities, class_names = None, None
    if config is not None:
        from anybind.config import load_config
        from anybind.recipes.check_data import config_modalities

        cfg = load_config(config)
        modalities, class_names = config_modalities(cfg), cfg.data.class_names
    index, skipped = shard_sources(
        sources,
        out,
        modalities=modalities,
        class_names=class_names,
        samples_per_shard=samples_per_shard,
        check=check,
        skip_bad=skip_bad,
        progress=not quiet,
    )
    counts = ", ".join(f"{m} {n}" for m, n in index.modalities.items())
    console.print(
        f"wrote {index.samples} samples ({counts}) in {len(index.shards)} shards to {out}; "
        f"skipped {skipped}",
        soft_wrap=True,
    )
