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
    grow: bool = typer.Option(
        False,
        "--grow",
        help="Extend the demo run (--base) with pen trajectories, point clouds and videos; "
        "--out defaults to runs/demo-grow and the overrides apply to the extension.",
    ),
    base: Path = typer.Option(
        Path("runs/demo"), "--base", help="--grow: the demo run to extend (trained if missing)."
    ),
) -> None:
    """Train and measure the built-in digits benchmark (images, speech, text), offline."""
    if grow:
        from anybind.recipes.grow_demo import run_grow_demo

        target = Path("runs/demo-grow") if out == Path("runs/demo") else out
        run_grow_demo(
            target, base=base, shared_data=shared_data, overrides=overrides or [],
            progress=not quiet,
        )  # fmt: skip
        return
    from anybind.recipes.demo import run_demo

    run_demo(out, shared_data=shared_data, overrides=overrides or [], progress=not quiet)
