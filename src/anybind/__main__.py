"""`python -m anybind …` (and `torchrun -m anybind train …`) is the `anybind` command.

This file is the command's entry point, not part of the library: nothing imports it, so its
import of the CLI leaves the layering (cli → recipes → library) intact."""

from anybind.cli.main import app

app(prog_name="anybind")
