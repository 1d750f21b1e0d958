"""`anybind demo`: the built-in digits benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import friendly_errors


@friendly_errors
def demo_command(
    overrides: list[str] = typer.Argument(None, help="Dotted overrides of the digits config."),
    out: Path = typer.Option(Path("runs/demo"), "--out", help="Run folder (replaced)."),
    shared_data: Path = typer.Option(
        None,
        "--shared-data",
        help="Folder with mnist/ and fsdd/ (default: $ANYBIND_SHARED_DATA or ../shared/data).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Train and measure the built-in digits benchmark (images, speech, text), offline."""
    from anybind.recipes.demo import run_demo

    run_demo(out, shared_data=shared_data, overrides=overrides or [], progress=not quiet)
