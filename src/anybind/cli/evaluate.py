"""`anybind eval RUN_DIR --data … --json OUT`."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import friendly_errors, write_json


@friendly_errors
def eval_command(
    run_dir: Path = typer.Argument(..., help="A run folder made by `anybind train`."),
    data: list[str] = typer.Option(
        None,
        "--data",
        help=(
            "Evaluation data (repeatable): a manifest (.jsonl/.csv/.parquet), an .npz, a folder, a "
            "YAML list of sources, or digits:test. Default: the config's data.eval."
        ),
    ),
    modality: str = typer.Option(None, "--modality", help="Modality of a folder's files."),
    pattern: str = typer.Option(
        r"^(?P<label>[^_]+)_", "--pattern", help="Regex with a (?P<label>…) group, for a folder."
    ),
    keys: list[str] = typer.Option(None, "--keys", help="For .npz: modality=array, repeatable."),
    preprocess: str = typer.Option(
        "none", "--preprocess", help="For .npz images: none or mnist_to_uci."
    ),
    adapter: Path = typer.Option(
        None, "--adapter", help="An adapter folder made by `anybind adapt` to apply first."
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the full report here."),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="Skip unreadable samples."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    allow_incomplete: bool = typer.Option(
        False, "--allow-incomplete", help="Evaluate a run that failed or did not finish."
    ),
    robust: bool = typer.Option(
        False,
        "--robustness",
        help="Score every subset of the fused modalities and each modality under increasing "
        "corruption; writes RUN/robustness.json (or --json) for the HTML report.",
    ),
) -> None:
    """Zero-shot accuracy, retrieval for every modality pair, and the geometry of the space."""
    from anybind.recipes.evaluate import evaluate_sources
    from anybind.recipes.report import print_report
    from anybind.recipes.source_specs import parse_sources

    space, classifiers, exclude = space_to_evaluate(run_dir, adapter, allow_incomplete)
    sources = (
        parse_sources(
            data or [], modality=modality, pattern=pattern, keys=keys or [], preprocess=preprocess
        )
        or space.config.data.eval
    )
    if not sources:
        from anybind.errors import AnybindError

        raise AnybindError("no evaluation data: pass --data or set data.eval in the config")
    if robust:
        run_robustness(space, sources, run_dir, json_out, quiet)
        return
    from anybind.recipes.distributed import join_process_group

    group = join_process_group(next(space.parameters()).device)  # under torchrun: sharded
    report = evaluate_sources(
        space,
        sources,
        progress=not quiet,
        skip_bad=skip_bad,
        classifiers=classifiers,
        exclude_ids=exclude,
        group=group,
    )
    group.close()
    if group.main:
        if adapter is not None:
            report["adapter"] = str(adapter)
        print_report({"eval": report})
        write_json(report, json_out)
    from anybind.cli.train import exit_if_torchrun

    exit_if_torchrun()


def run_robustness(space, sources, run_dir: Path, json_out: Path | None, quiet: bool) -> None:
    """`--robustness`: the report as a table, saved beside the run (and to --json)."""
    from rich.table import Table

    from anybind.cli.common import console
    from anybind.recipes.robustness import robustness

    report = robustness(space, sources, progress=not quiet)
    levels = report["levels"]
    if report.get("subsets"):
        table = Table(title="Joint embedding from each subset of the fused modalities")
        table.add_column("present")
        table.add_column("top-1", justify="right")
        for subset, top1 in report["subsets"].items():
            table.add_row(subset.replace("+", " + "), f"{100 * top1:.1f}%")
        console.print(table)
    table = Table(title="Zero-shot top-1 under corruption (level 0 = clean)")
    for col in ["corrupted", "corruption", "scored", *[f"{x:g}" for x in levels], "rel.", "eff."]:
        table.add_column(
            col, justify="left" if col in ("corrupted", "corruption", "scored") else "right"
        )
    for m, by_name in report["corruptions"].items():
        for name, targets in by_name.items():
            for target, entry in targets.items():
                eff = entry.get("effective_robustness")
                table.add_row(m, name, target, *[f"{100 * a:.1f}" for a in entry["top1"]],
                              f"{entry['relative_robustness']:.3f}",
                              f"{eff:+.3f}" if eff is not None else "")  # fmt: skip
    console.print(table)
    write_json(report, json_out or Path(run_dir) / "robustness.json")


def space_to_evaluate(run_dir: Path, adapter: Path | None, allow_incomplete: bool):
    """The run's space (with the adapter applied when given), the adapter's classifiers and the
    ids of its adaptation samples, which evaluation leaves out."""
    if adapter is None:
        from anybind.space import load_space

        return load_space(run_dir, allow_incomplete=allow_incomplete), None, None
    from anybind.adapt.store import adaptation_ids, adapted_classifiers, load_adapted

    space, adaptation = load_adapted(adapter, run_dir)
    return space, adapted_classifiers(space, adaptation), adaptation_ids(adapter)
