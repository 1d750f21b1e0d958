"""`anybind adapt RUN_DIR --method NAME --data … [--shots K] --out ADAPT_DIR --json OUT`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from anybind.cli.common import console, friendly_errors, write_json


def parse_options(items: list[str]) -> dict[str, Any]:
    """`key=value` pairs (values parsed as YAML; dotted keys nest: tuner.r=4)."""
    import yaml

    from anybind.errors import ConfigError

    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"'{item}' is not key=value", key="--set")
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = yaml.safe_load(raw)
    return out


@friendly_errors
def adapt_command(
    run_dir: Path = typer.Argument(..., help="A run folder made by `anybind train`."),
    method: str = typer.Option(
        ...,
        "--method",
        help="linear-probe, cross-modal-probe, lora, ia3, adapter, prompt, self-train or tent.",
    ),
    data: list[str] = typer.Option(
        ...,
        "--data",
        help="Target data: mnist:FILE.npz, fsdd:FOLDER, a manifest, an .npz, a folder or a YAML.",
    ),
    shots: int = typer.Option(
        None, "--shots", min=1, help="Labelled samples per class (few-shot)."
    ),
    out: Path = typer.Option(..., "--out", help="Adapter folder to write."),
    json_out: Path = typer.Option(None, "--json", help="Write the scores and the split here."),
    settings: list[str] = typer.Option(
        None, "--set", help="Method option key=value (repeatable), e.g. --set steps=300."
    ),
    seed: int = typer.Option(0, "--seed", help="Seed of the shots and of training."),
    eval_fraction: float = typer.Option(
        0.5, "--eval-fraction", help="Share of the target data held out for evaluation."
    ),
    modality: str = typer.Option(
        None,
        "--modality",
        help="The modality to adapt when the data holds several; the modality of a folder's files.",
    ),
    pattern: str = typer.Option(r"^(?P<label>[^_]+)_", "--pattern", help="Label regex (folder)."),
    keys: list[str] = typer.Option(None, "--keys", help="For .npz: modality=array."),
    preprocess: str = typer.Option("none", "--preprocess", help="none or mnist_to_uci."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable samples."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Adapt a trained space to target data; save a small adapter; score it against zero-shot."""
    from anybind.adapt.run import adapt_run, target_modality
    from anybind.recipes.data import build_dataset
    from anybind.recipes.source_specs import parse_sources
    from anybind.space import load_space

    sources = parse_sources(
        data, modality=modality, pattern=pattern, keys=keys or [], preprocess=preprocess
    )
    space = load_space(run_dir)
    dataset, report = build_dataset(
        sources,
        space.config,
        space.modalities,
        skip_bad=skip_bad,
        progress=not quiet,
        description="loading target",
        cache="memory",  # adaptation revisits its few samples many times
    )
    if report.skipped:
        console.print(f"[yellow]skipped {report.skipped} unreadable samples[/]")
    target = target_modality(space, dataset, modality)
    result = adapt_run(
        run_dir,
        method,
        dataset,
        target,
        shots=shots,
        seed=seed,
        options=parse_options(settings or []),
        out=out,
        eval_fraction=eval_fraction,
        progress=not quiet,
        name=",".join(data),
    )
    zs, ad = result["zero_shot"]["top1"], result["adapted"]["top1"]
    console.print(
        f"[bold]{method}[/] on {result['target']} ({target}, "
        f"{result['train_samples']} adaptation samples, {result['split']['eval_samples']} held out)"
        f": zero-shot {100 * zs:.1f}% → adapted {100 * ad:.1f}% ({100 * (ad - zs):+.1f})"
    )
    console.print(f"adapter written to {out}")
    write_json(result, json_out)


def _ints(text: str | None) -> list[int] | None:
    return [int(x) for x in text.split(",")] if text else None


def _names(text: str | None) -> list[str] | None:
    return [x for x in text.split(",") if x] if text is not None else None


@friendly_errors
def adapt_table_command(
    run_dir: Path = typer.Argument(..., help="A run folder (e.g. runs/demo from `make demo`)."),
    shared_data: Path = typer.Option(
        Path("../shared/data"), "--shared-data", help="Folder holding mnist/ and fsdd/."
    ),
    doc: Path = typer.Option(
        Path("docs/adaptation.md"), "--doc", help="Markdown file whose generated table to replace."
    ),
    json_out: Path = typer.Option(
        Path("benchmarks/results/adaptation.json"), "--json", help="Every run's record."
    ),
    domains: str = typer.Option(None, "--domains", help="Comma list (default mnist,fsdd)."),
    shots: str = typer.Option(None, "--shots", help="Comma list (default 1,2,4,8,16)."),
    seeds: str = typer.Option(None, "--seeds", help="Comma list (default 1,2,3)."),
    few_shot: str = typer.Option(None, "--few-shot", help="Few-shot methods (comma list)."),
    label_free: str = typer.Option(None, "--label-free", help="Label-free methods."),
    base_novel: str = typer.Option(None, "--base-novel", help="Base-to-novel methods."),
) -> None:
    """Run every adaptation method on both real target domains and write the table."""
    import shlex
    import sys

    from anybind.errors import AnybindError
    from anybind.recipes.adaptation_table import build_table, markdown, write_json, write_markdown

    if not (shared_data / "mnist").is_dir() or not (shared_data / "fsdd").is_dir():
        raise AnybindError(f"{shared_data} does not hold mnist/ and fsdd/")
    table = build_table(
        run_dir,
        shared_data,
        domains=_names(domains),
        shots=_ints(shots),
        seeds=_ints(seeds),
        few_shot=_names(few_shot),
        label_free=_names(label_free),
        base_novel=_names(base_novel),
        console=console,
    )
    command = "anybind " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    write_json(table, json_out)
    write_markdown(doc, markdown(table, command))
    console.print(f"wrote {doc} and {json_out} ({table['wall_s'] / 60:.1f} min)")
