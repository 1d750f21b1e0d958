"""Options the CLI checks itself: --version, and counts that must be positive."""

from __future__ import annotations

from typer.testing import CliRunner

from anybind import __version__
from anybind.cli.main import app


def test_version_prints_the_package_version() -> None:
    done = CliRunner().invoke(app, ["--version"])
    assert done.exit_code == 0 and done.output.strip() == f"anybind {__version__}"


def test_zero_or_negative_shots_are_refused_by_name(tmp_path) -> None:
    for shots in ("0", "-3"):
        args = ["adapt", str(tmp_path), "--method", "linear_probe", "--data", "x",
                "--shots", shots, "--out", str(tmp_path / "a")]  # fmt: skip
        done = CliRunner().invoke(app, args)
        assert done.exit_code == 2 and "--shots" in done.output
        assert not (tmp_path / "a").exists()
