"""`python -m anybind …` (and `torchrun -m anybind train …`) is the `anybind` command."""

from anybind.cli.main import app

app(prog_name="anybind")
