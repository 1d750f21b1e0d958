"""`anybind repro …`: reproductions of papers' central claims on synthetic data."""

from __future__ import annotations

from pathlib import Path

import typer

from anybind.cli.common import friendly_errors, write_json

app = typer.Typer(no_args_is_help=True, help="Reproduce papers' central claims.")


@app.command("symile-xor")
@friendly_errors
def symile_xor_command(
    n_train: int = typer.Option(10_000, help="Training samples."),
    n_test: int = typer.Option(2_000, help="Test samples."),
    bits: int = typer.Option(5, help="Bits per modality; c = a XOR b."),
    epochs: int = typer.Option(20, help="Epochs for each objective (the same budget)."),
    seed: int = typer.Option(0, help="Seed of data and training."),
    json_out: Path = typer.Option(None, "--json", help="Write the result here."),
) -> None:
    """Symile vs pairwise CLIP on data where one modality is the XOR of the others
    (Saporta et al. 2024): only the higher-order objective can predict it."""
    from anybind.recipes.repro_symile_xor import run_symile_xor

    result = run_symile_xor(n_train=n_train, n_test=n_test, bits=bits, epochs=epochs, seed=seed)
    write_json(result, json_out)
