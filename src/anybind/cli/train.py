"""`anybind train` and `anybind validate`."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import console, friendly_errors


@friendly_errors
def train_command(
    config: Path = typer.Argument(..., help="YAML config of the run."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. optim.lr=1e-3."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (or resume)."),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    skip_bad: bool = typer.Option(
        False, "--skip-bad", help="Skip unreadable samples and count them instead of stopping."
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Align the configured modalities into one space."""
    from anybind.recipes.train import train

    summary = train(
        config,
        out,
        overrides=overrides or [],
        resume=resume,
        skip_bad=skip_bad or None,
        progress=not quiet,
    )
    console.print(
        f"trained {summary.steps} steps ({summary.epochs:.1f} epochs) in "
        f"{summary.wall_s:.1f} s, {summary.samples_per_s:.0f} samples/s; final loss "
        f"{summary.final_loss:.4f}; skipped samples: {summary.skipped_samples}; "
        f"run folder: {out}",
        soft_wrap=True,
    )


@friendly_errors
def validate_command(
    config: Path = typer.Argument(..., help="YAML config to check."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides."),
) -> None:
    """Check a config without building anything: unknown keys, types, combinations."""
    from anybind.config import load_config

    cfg = load_config(config, overrides or [])
    console.print(f"{config}: valid ({len(cfg.modalities)} modalities, pairs {cfg.pairs()})")
