"""`anybind init CONFIG --out RUN`: a run from pretrained, already-aligned towers, untrained."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import console, friendly_errors


@friendly_errors
def init_command(
    config: Path = typer.Argument(
        ..., help="YAML config whose towers come from one pretrained CLIP (clip_vision/clip_text)."
    ),
    overrides: list[str] = typer.Argument(None, help="Dotted overrides, e.g. space.dim=512."),
    out: Path = typer.Option(..., "--out", help="Run folder to create (new or empty)."),
) -> None:
    """A run from a pretrained CLIP's towers, projections and logit scale, with no training."""
    from anybind.recipes.init import init_run, read_init

    run = init_run(config, out, overrides=overrides or [])
    record = read_init(run)
    towers = ", ".join(f"{name} ({t['type']})" for name, t in record["towers"].items())
    console.print(
        f"initialised {run} from {record['checkpoint']}: towers {towers}, logit scale "
        f"{record['logit_scale_read']:.4g}; nothing was trained (evaluate it with "
        f"`anybind eval {run} --data …`)",
        highlight=False,
        soft_wrap=True,
    )
