"""Command-line interface (typer): one file per command group."""
