"""`anybind report`: one self-contained HTML file whose every plot is drawn from the run's own
numbers (the evaluation report, metrics.jsonl, the adapter's result)."""

from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import tiny_config, write_tiny
from typer.testing import CliRunner

from anybind.api import adapt_run, load_run
from anybind.cli.main import app
from anybind.config import config_from_dict
from anybind.config.schema import ArraysSource
from anybind.recipes.train import train

PLOTS = {"training-loss", "learning-rate", "zero-shot", "confusion-image", "retrieval",
         "map-modality", "map-class", "similarity", "adaptation"}  # fmt: skip


class Figures(HTMLParser):
    """name → (the PNG bytes of its <img>, the JSON of its numbers)."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, dict] = {}
        self._current: str | None = None
        self._in_data = False
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if a.get(key, "").startswith(("http:", "https:", "//")):
                self.external.append(a[key])
        if tag == "figure":
            self._current = a["data-plot"]
            self.figures[self._current] = {}
        elif tag == "img" and self._current:
            prefix = "data:image/png;base64,"
            assert a["src"].startswith(prefix)
            self.figures[self._current]["png"] = base64.b64decode(a["src"][len(prefix) :])
        elif tag == "script" and a.get("class") == "plot-data":
            self._in_data = True
        elif tag in ("link", "script") and a.get("src"):
            self.external.append(a["src"])

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_data = False
        if tag == "figure":
            self._current = None

    def handle_data(self, data: str) -> None:
        if self._in_data and self._current:
            self.figures[self._current]["data"] = json.loads(data)


@pytest.fixture(scope="module")
def reported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Figures]:
    root = tmp_path_factory.mktemp("report")
    npz = write_tiny(root / "tiny.npz", 96)
    write_tiny(root / "tiny-heldout.npz", 48, seed=1)
    train(config_from_dict(tiny_config(npz, **{"optim.steps": 40})), root / "run", progress=False)
    target = ArraysSource(path=str(npz), keys={"image": "images"})
    adapt_run(root / "run", "linear-probe", [target], shots=4, out=root / "run" / "adapters" / "lp")
    done = CliRunner().invoke(app, ["report", str(root / "run"), "--quiet"])
    assert done.exit_code == 0, done.output
    page = root / "run" / "report.html"
    assert f"wrote {page}" in done.output.replace("\n", "")
    parser = Figures()
    parser.feed(page.read_text(encoding="utf-8"))
    return root, page, parser


def test_every_plot_is_present_inline_and_nothing_is_fetched(reported) -> None:
    _, _, parser = reported
    assert set(parser.figures) == PLOTS
    for name, figure in parser.figures.items():
        assert figure["png"].startswith(b"\x89PNG\r\n\x1a\n") and len(figure["png"]) > 2000, name
    assert parser.external == []


def test_the_plots_show_the_runs_own_evaluation(reported) -> None:
    root, _, parser = reported
    report = load_run(root / "run").evaluate(progress=False)
    f = parser.figures
    zs = report["zero_shot"]["image"]
    assert f["confusion-image"]["data"]["confusion"] == zs["confusion"]
    assert f["zero-shot"]["data"] == {"modality": ["image"], "top1": [zs["top1"]]}
    pairs = f["retrieval"]["data"]["pair"]
    assert set(pairs) == set(report["retrieval"])
    for i, pair in enumerate(pairs):
        for k in (1, 5, 10):
            assert f["retrieval"]["data"][f"R@{k}"][i] == report["retrieval"][pair][f"R@{k}"]
    assert len(f["map-modality"]["data"]["points"]) == 48 + 48  # every held-out image and text
    assert sorted(set(f["map-modality"]["data"]["modality"])) == ["image", "text"]


def test_the_curves_are_the_logged_losses_and_the_adapter_its_result(reported) -> None:
    root, _, parser = reported
    logged = [
        json.loads(line) for line in (root / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    curve = parser.figures["training-loss"]["data"]
    assert curve["step"] == [r["step"] for r in logged]
    assert curve["loss"] == [r["loss"] for r in logged]
    result = json.loads((root / "run" / "adapters" / "lp" / "result.json").read_text())
    shown = parser.figures["adaptation"]["data"]
    assert shown["zero-shot"] == [result["zero_shot"]["top1"]]
    assert shown["adapted"] == [result["adapted"]["top1"]]
    assert re.search(r"lp \(linear-probe\)", shown["adapter"][0])
