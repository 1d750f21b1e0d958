"""`anybind` — bind modalities into one space, then measure and use it."""

from __future__ import annotations

import typer

from anybind.cli import adapt, demo, evaluate, grow, init, repro, shard, train, use

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Bind any set of modalities into one embedding space; measure and use it.",
)


def show_version(value: bool) -> None:
    if value:
        from anybind import __version__

        typer.echo(f"anybind {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    version: bool = typer.Option(
        False, "--version", callback=show_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """Bind any set of modalities into one embedding space; measure and use it."""


app.command("train")(train.train_command)
app.command("init")(init.init_command)
app.command("validate")(train.validate_command)
app.command("check-data")(train.check_data_command)
app.command("shard")(shard.shard_command)
app.command("eval")(evaluate.eval_command)
app.command("adapt")(adapt.adapt_command)
app.command("adapt-table")(adapt.adapt_table_command)
app.command("demo")(demo.demo_command)
app.command("extend")(grow.extend_command)
app.command("embed")(use.embed_command)
app.command("index")(use.index_command)
app.command("search")(use.search_command)
app.command("serve")(use.serve_command)
app.command("report")(use.report_command)
app.add_typer(repro.app, name="repro")

if __name__ == "__main__":
    app()
