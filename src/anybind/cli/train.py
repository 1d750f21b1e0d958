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
    check: bool = typer.Option(
        False, "--check-data", help="Decode every record first; stop if any is bad."
    ),
) -> None:
    """Align the configured modalities into one space."""
    from anybind.config import load_config
    from anybind.recipes.train import train

    if check:
        cfg = load_config(config, overrides or [])
        bad = report_checks(cfg, splits=("train",), quiet=quiet)
        if bad and not (skip_bad or cfg.data.skip_bad):
            console.print(f"[bold red]error:[/] {bad} bad records; fix them or pass --skip-bad")
            raise typer.Exit(1)
    summary = train(
        config,
        out,
        overrides=overrides or [],
        resume=resume,
        skip_bad=skip_bad or None,
        progress=not quiet,
    )
    if main_process() and summary.resumed_from == summary.steps:
        console.print(f"nothing to resume: {out} already finished {summary.steps} steps")
    elif main_process():
        resumed = f" (resumed from step {summary.resumed_from})" if summary.resumed_from else ""
        console.print(
            f"trained {summary.steps} steps{resumed} ({summary.epochs:.1f} epochs) in "
            f"{summary.wall_s:.1f} s, {summary.samples_per_s:.0f} samples/s; final loss "
            f"{summary.final_loss:.4f}; skipped samples: {summary.skipped_samples}; "
            f"run folder: {out}",
            soft_wrap=True,
        )
    exit_if_torchrun()


@friendly_errors
def validate_command(
    config: Path = typer.Argument(..., help="YAML config to check."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides."),
) -> None:
    """Check a config without building anything: unknown keys, types, combinations."""
    from anybind.config import load_config

    cfg = load_config(config, overrides or [])
    console.print(f"{config}: valid ({len(cfg.modalities)} modalities, pairs {cfg.pairs()})")


def exit_if_torchrun() -> None:
    """Under torchrun, leave as soon as the work is done and on disk: a rank stuck in the
    interpreter's teardown (gloo threads, destructors) would keep torchrun, and every other
    rank's job, waiting."""
    import os
    import sys

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def main_process() -> bool:
    """Under torchrun only rank 0 reports."""
    import os

    return os.environ.get("RANK", "0") == "0"


def report_checks(cfg, *, splits: tuple[str, ...], quiet: bool) -> int:
    """Print every bad record of the checked splits and a line per split; the number bad."""
    from anybind.recipes.check_data import check_data

    bad = 0
    for check in check_data(cfg, splits=splits, progress=not quiet):
        for message in check.bad:
            console.print(message, highlight=False, soft_wrap=True, markup=False)
        ok = check.records - len(check.bad)
        console.print(
            f"{check.split}: {check.records} records, {ok} good, {len(check.bad)} bad "
            f"({check.records / max(check.wall_s, 1e-9):.0f} records/s)"
        )
        bad += len(check.bad)
    return bad


@friendly_errors
def check_data_command(
    config: Path = typer.Argument(..., help="YAML config whose data to check."),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides."),
    split: str = typer.Option("all", "--split", help="train, eval or all."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
) -> None:
    """Decode every record of the configured data and name each bad one by file and row."""
    from anybind.config import load_config
    from anybind.errors import ConfigError

    if split not in ("train", "eval", "all"):
        raise ConfigError(f"--split must be train, eval or all, not {split!r}", key="--split")
    cfg = load_config(config, overrides or [])
    splits = ("train", "eval") if split == "all" else (split,)
    if report_checks(cfg, splits=splits, quiet=quiet):
        raise typer.Exit(1)
