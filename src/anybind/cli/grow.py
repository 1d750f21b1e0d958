"""`anybind extend`: add modalities to a trained space without touching it."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import console, friendly_errors


@friendly_errors
def extend_command(
    run_dir: Path = typer.Argument(..., help="The trained run to extend (left unchanged)."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides of the extension config."),
    config: Path = typer.Option(..., "--config", help="YAML of the new modalities and training."),
    out: Path = typer.Option(..., "--out", help="The extended run folder to create (or resume)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip unreadable samples and count them instead of stopping."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train new modalities' towers against a frozen run: a new run that stores only them."""
    from anybind.recipes.extend import extend

    summary = extend(
        run_dir,
        config,
        out,
        overrides=overrides or [],
        resume=resume,
        skip_bad=skip_bad or None,
        progress=not quiet,
    )
    console.print(
        f"extended {run_dir} in {summary.wall_s:.1f} s ({summary.steps} steps, "
        f"{summary.samples_per_s:.0f} samples/s, final loss {summary.final_loss:.4f}); "
        f"run folder: {out}",
        soft_wrap=True,
    )
