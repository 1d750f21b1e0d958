"""The command line: errors are one line naming the key/file, eval writes its JSON report."""

from __future__ import annotations

import json

import yaml
from conftest import heldout_of, tiny_config
from typer.testing import CliRunner

from anybind.cli.main import app
from anybind.config import config_from_dict
from anybind.recipes.train import train

runner = CliRunner()


def test_bad_config_is_one_clear_line_and_exit_code_2(tmp_path, tiny_npz):
    data = tiny_config(tiny_npz)
    data["optim"]["learning_rate"] = 1
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code == 2
    assert "optim.learning_rate" in result.output and "bad.yaml" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run").exists()  # nothing built before the config is valid


def test_validate_reports_the_pairs(tmp_path, tiny_npz):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(yaml.safe_dump(tiny_config(tiny_npz)))
    result = runner.invoke(
        app, ["validate", str(cfg), "objective.pairs=anchor", "objective.anchor=text"]
    )
    assert result.exit_code == 0 and "('image', 'text')" in result.output


def test_corrupt_data_names_file_and_row_or_is_skipped(tmp_path, tiny_npz):
    img = tmp_path / "good.npy"
    import numpy as np

    np.save(img, np.zeros((8, 8), dtype=np.float32))
    (tmp_path / "bad.png").write_bytes(b"\x89PNG garbage")
    manifest = tmp_path / "m.jsonl"
    rows = [
        {"image": "good.npy", "text": "zero", "label": 0},
        {"image": "bad.png", "text": "one", "label": 1},
        {"image": "good.npy", "text": "zero", "label": 0},
    ]
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = tiny_config(tiny_npz)
    data["data"]["train"] = [{"type": "manifest", "path": str(manifest)}]
    data["optim"]["steps"] = 1
    cfg = tmp_path / "m.yaml"
    cfg.write_text(yaml.safe_dump(data))
    result = runner.invoke(app, ["train", str(cfg), "--out", str(tmp_path / "r1"), "--quiet"])
    assert result.exit_code == 2
    assert "bad.png" in result.output and "row 2" in result.output
    result = runner.invoke(
        app, ["train", str(cfg), "--out", str(tmp_path / "r2"), "--quiet", "--skip-bad"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped samples: 1" in result.output.replace("\n", " ")


def test_eval_writes_a_json_report(tmp_path, tiny_npz):
    run = tmp_path / "run"
    train(config_from_dict(tiny_config(tiny_npz, **{"optim.steps": 2})), run, progress=False)
    out = tmp_path / "eval.json"
    result = runner.invoke(
        app,
        [
            "eval",
            str(run),
            "--data",
            str(heldout_of(tiny_npz)),
            "--keys",
            "image=images",
            "--keys",
            "text=captions",
            "--json",
            str(out),
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["samples"] == 48
    assert set(report["retrieval"]) == {"image->text", "text->image"}
    assert set(report["zero_shot"]) == {"image"}
    # the CLI reports what the library computes on the same data (the config's eval source is
    # the same held-out file with the same keys)
    from anybind.api import load_run

    expected = load_run(run).evaluate()
    assert report["zero_shot"]["image"]["top1"] == expected["zero_shot"]["image"]["top1"]
    assert report["zero_shot"]["image"]["confusion"] == expected["zero_shot"]["image"]["confusion"]
    assert report["retrieval"]["image->text"] == expected["retrieval"]["image->text"]
    assert sum(map(sum, report["zero_shot"]["image"]["confusion"])) == 48
    assert "image|text" in report["geometry"]["modality_gap"]
    missing = runner.invoke(app, ["eval", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "not a run folder" in missing.output
