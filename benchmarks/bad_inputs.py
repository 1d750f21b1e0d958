"""Replay the bad inputs and faults of the Harden audit through the CLI and tabulate the outcome.

Each case builds its input in a scratch folder, runs `anybind …` in a subprocess and checks:
- the exit code is the expected one (2 for a refused input, 0 where the input is legitimate),
- no Python traceback is printed (a bare traceback is a failure of this tool, not of the input),
- the one-line message names the file, row or key (each case says which text it must hold),
- no file outside the case's output folder changed (the inputs are hashed before and after).

    .venv/bin/python benchmarks/bad_inputs.py [--only TEXT …] [--json results/bad_inputs.json]

Prints a markdown table (case, exit code, message) and exits 1 if any case fails. The full-disk
and read-only cases mount small tmpfs folders and need root with mount rights; elsewhere they are
reported as not run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["zero", "one", "two", "three"]


@dataclass
class Case:
    name: str
    build: Callable[[Path], list[list[str]]]  # scratch → commands; the last one is judged
    expect: int = 2
    says: tuple[str, ...] = ()  # what the message must hold (regular expressions)
    check: Callable[[Path], str | None] | None = None  # an extra check; returns a problem
    needs_mount: bool = False
    cwd: str | None = None  # the folder (under the scratch one) the judged command runs in
    outputs: tuple[str, ...] = ("run", "run2", "adapter", "out")  # may change


@dataclass
class Outcome:
    case: str
    exit_code: int
    message: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0


# ---------------------------------------------------------------- inputs


# The tiny task of tests/conftest.py, restated: a benchmark runs without the test tree (and its
# pytest fixtures) on the path.
def tiny_data(root: Path) -> Path:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, size=64)
    images = rng.uniform(0, 0.2, size=(64, 8, 8)).astype(np.float32)
    for i, y in enumerate(labels):
        images[i, 2 * y : 2 * y + 2, :] = 0.9
    captions = np.array([f"a picture of {CLASS_NAMES[y]}" for y in labels])
    path = root / "tiny.npz"
    np.savez(path, images=images, labels=labels, captions=captions)
    return path


def tiny_config(npz: Path, **changes: Any) -> dict[str, Any]:
    arrays = {"type": "arrays", "path": str(npz), "keys": {"image": "images", "text": "captions"}}
    config: dict[str, Any] = {
        "modalities": {
            "image": {
                "options": {"size": [8, 8]},
                "encoder": {"type": "image_cnn", "width": 8, "stages": 2},
            },
            "text": {
                "encoder": {
                    "type": "text_bytes",
                    "width": 16,
                    "layers": 1,
                    "heads": 2,
                    "max_bytes": 24,
                },  # fmt: skip
            },
        },
        "space": {"dim": 16},
        "data": {"class_names": CLASS_NAMES, "train": [arrays], "eval": [dict(arrays)]},
        "optim": {"lr": 0.003, "steps": 6, "batch_size": 16, "warmup_steps": 1},
        "train": {"checkpoint_every": 3, "log_every": 1},
    }
    for key, value in changes.items():
        node = config
        *parents, last = key.split(".")
        for p in parents:
            node = node[p]
        node[last] = value
    return config


def write_config(root: Path, name: str = "cfg.yaml", **changes: Any) -> Path:
    path = root / name
    path.write_text(yaml.safe_dump(tiny_config(tiny_data(root), **changes)))
    return path


def manifest(root: Path, rows: list[dict[str, Any]], name: str = "m.jsonl") -> Path:
    path = root / name
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def manifest_config(root: Path, path: Path, columns: dict[str, str], **changes: Any) -> Path:
    source = {"type": "manifest", "path": str(path), "columns": columns}
    return write_config(root, **{"data.train": [source], "data.eval": [], **changes})


def image_rows(n: int = 8) -> list[dict[str, Any]]:
    image = np.full((8, 8), 0.5).tolist()
    return [
        {"image": image, "caption": f"a picture of {CLASS_NAMES[i % 4]}", "label": i % 4}
        for i in range(n)
    ]


def train(cfg: Path, out: Path, *extra: str) -> list[str]:
    return ["train", str(cfg), "--out", str(out), "--quiet", *extra]


def trained(root: Path) -> Path:
    """A finished tiny run at root/base (built once per case that needs one)."""
    cfg = write_config(root, "base.yaml")
    done = anybind(train(cfg, root / "base"), root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "base"


# ---------------------------------------------------------------- the cases


def validation_case(name: str, says: str, **changes: Any) -> Case:
    """A config that cannot work: refused by `train` before the run folder exists."""

    def build(root: Path) -> list[list[str]]:
        return [train(write_config(root, **changes), root / "run")]

    def check(root: Path) -> str | None:
        return "the run folder was created" if (root / "run").exists() else None

    return Case(f"config: {name}", build, says=(says,), check=check)


def _bad_manifest_case(name: str, rows: list[dict[str, Any]], says: tuple[str, ...],
                       columns: dict[str, str] | None = None, **changes: Any) -> Case:  # fmt: skip
    def build(root: Path) -> list[list[str]]:
        path = manifest(root, rows)
        cols = columns or {"image": "image", "text": "caption"}
        return [train(manifest_config(root, path, cols, **changes), root / "run")]

    return Case(name, build, says=says)


def failed_run(root: Path) -> list[list[str]]:
    cfg = write_config(root, **{"optim.lr": 100.0, "optim.grad_clip": None})
    return [train(cfg, root / "run"), ["eval", str(root / "run")]]


def resume_finished(root: Path) -> list[list[str]]:
    base = trained(root)
    (root / "summary.before").write_bytes((base / "summary.json").read_bytes())
    return [train(root / "base.yaml", base, "--resume")]


def summary_unchanged(root: Path) -> str | None:
    same = (root / "summary.before").read_bytes() == (root / "base" / "summary.json").read_bytes()
    return None if same else "summary.json changed"


def non_utf8(suffix: str) -> Callable[[Path], list[list[str]]]:
    def build(root: Path) -> list[list[str]]:
        if suffix == ".yaml":
            path = root / "cfg.yaml"
            path.write_bytes(b"optim:\n  lr: 0.1 \xff\xfe\n")
            return [["validate", str(path)]]
        path = root / f"m{suffix}"
        text = (
            '{"caption": "caf\xe9", "label": 0}\n' if suffix == ".jsonl" else "caption\ncaf\xe9\n"
        )
        path.write_bytes(text.encode("latin-1"))
        return [train(manifest_config(root, path, {"text": "caption"}), root / "run")]

    return build


def npz_case(name: str, arrays: dict[str, Any], says: tuple[str, ...], raw: bytes | None = None
             ) -> Case:  # fmt: skip
    def build(root: Path) -> list[list[str]]:
        path = root / "bad.npz"
        if raw is not None:
            path.write_bytes(raw)
        else:
            np.savez(path, **arrays)
        base = trained_from(root, write_config(root))
        return [["eval", str(base), "--data", str(path), "--keys", "image=images"]]

    return Case(name, build, says=says)


def trained_from(root: Path, cfg: Path) -> Path:
    """A finished run of `cfg` without its eval sources (they hold the bad input)."""
    data = yaml.safe_load(cfg.read_text())
    data["data"]["eval"] = []
    cfg.write_text(yaml.safe_dump(data))
    done = anybind(train(cfg, root / "base"), root)
    assert done.returncode == 0, done.stdout + done.stderr
    return root / "base"


def audio_case(name: str, value: Any, says: tuple[str, ...]) -> Case:
    def build(root: Path) -> list[list[str]]:
        rows = [{"audio": value, "caption": "a picture of one", "label": 1}] * 4
        path = manifest(root, rows)
        cfg = write_config(root)
        data = yaml.safe_load(cfg.read_text())
        data["modalities"]["audio"] = {
            "options": {
                "sample_rate": 8000,
                "max_seconds": 0.25,
                "n_mels": 16,
                "frames": 16,
                "n_fft": 128,
                "hop_length": 64,
            },  # fmt: skip
            "encoder": {"type": "audio_cnn", "width": 8},
        }
        source = {"type": "manifest", "path": str(path),
                  "columns": {"audio": "audio", "text": "caption"}}  # fmt: skip
        data["data"]["train"] = [source]
        data["data"]["eval"] = []
        cfg.write_text(yaml.safe_dump(data))
        return [train(cfg, root / "run")]

    return Case(name, build, says=says)


def png_bomb(root: Path) -> list[list[str]]:
    from PIL import Image

    (root / "img").mkdir()
    Image.new("1", (12000, 12000)).save(root / "img" / "bomb.png", optimize=True)
    rows = [{"image": "img/bomb.png", "caption": "a picture of one", "label": 1}] * 4
    cfg = manifest_config(root, manifest(root, rows), {"image": "image", "text": "caption"})
    return [train(cfg, root / "run")]


def adapter_case(name: str, content: str, says: tuple[str, ...]) -> Case:
    def build(root: Path) -> list[list[str]]:
        base = trained(root)
        adapter = root / "adapter"
        adapter.mkdir()
        (adapter / "adapter.json").write_text(content)
        return [["eval", str(base), "--adapter", str(adapter)]]

    return Case(name, build, says=says, outputs=("run", "out"))


def state_without_step(root: Path) -> list[list[str]]:
    base = trained(root)
    last = sorted((base / "checkpoints").glob("step-*"))[-1]
    state = json.loads((last / "state.json").read_text())
    state.pop("step")
    (last / "state.json").write_text(json.dumps(state))
    status = json.loads((base / "status.json").read_text())
    status["state"] = "running"
    (base / "status.json").write_text(json.dumps(status))
    return [train(root / "base.yaml", base, "--resume")]


def shape_mismatch(root: Path) -> list[list[str]]:
    base = trained(root)
    config = yaml.safe_load((base / "config.yaml").read_text())
    config["space"]["dim"] = 32
    (base / "config.yaml").write_text(yaml.safe_dump(config))
    return [["eval", str(base)]]


def shots(value: str) -> Callable[[Path], list[list[str]]]:
    def build(root: Path) -> list[list[str]]:
        base = trained(root)
        data = str(root / "tiny.npz")
        out = str(root / "adapter")
        return [["adapt", str(base), "--method", "linear-probe", "--data", data,
                 "--keys", "image=images", "--shots", value, "--out", out]]  # fmt: skip

    return build


def python_tag(root: Path) -> list[list[str]]:
    return [["validate", str(write_config(root)), "optim.lr=!!python/object/apply:os.system [id]"]]


def torn_metrics(root: Path) -> list[list[str]]:
    cfg = write_config(root, **{"optim.steps": 12, "train.checkpoint_every": 4})
    done = anybind(train(cfg, root / "run"), root)
    assert done.returncode == 0
    metrics = root / "run" / "metrics.jsonl"
    metrics.write_text(metrics.read_text() + '{"step": 13, "lo')
    status = json.loads((root / "run" / "status.json").read_text())
    status["state"] = "running"  # as a crash at step 12 would leave it, with step 8 kept last
    (root / "run" / "status.json").write_text(json.dumps(status))
    (root / "run" / "checkpoints" / "latest").write_text("step-00000008")
    return [train(cfg, root / "run", "--resume")]


def metrics_whole(root: Path) -> str | None:
    lines = (root / "run" / "metrics.jsonl").read_text().splitlines()
    try:
        steps = [json.loads(line)["step"] for line in lines]
    except ValueError:
        return "metrics.jsonl still holds a torn line"
    return None if steps[-1] == 12 else f"metrics.jsonl ends at step {steps[-1]}"


def mounted(root: Path, name: str, options: str) -> Path | None:
    folder = root / name
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True)  # fmt: skip
    return folder if done.returncode == 0 else None


def full_disk(root: Path) -> list[list[str]]:
    cfg = write_config(root, **{"optim.steps": 12, "train.checkpoint_every": 2})
    reference = root / "reference"
    anybind(train(cfg, reference), root)
    size = sum(f.stat().st_size for f in reference.rglob("*") if f.is_file())
    shutil.rmtree(reference)
    disk = mounted(root, "disk", f"size={max(size // 3, 65536)}")
    if disk is None:
        raise NotMounted
    return [train(cfg, disk / "run")]


def read_only(root: Path) -> list[list[str]]:
    disk = mounted(root, "ro", "ro,size=64k")
    if disk is None:
        raise NotMounted
    return [train(write_config(root), disk / "run")]


class NotMounted(Exception):
    """This machine does not let us mount a tmpfs (not root, or no mount rights)."""


def latest_outside(root: Path) -> list[list[str]]:
    base = trained(root)
    (root / "elsewhere").mkdir()
    (base / "checkpoints" / "latest").write_text("../../elsewhere")
    status = json.loads((base / "status.json").read_text())
    status["state"] = "running"
    (base / "status.json").write_text(json.dumps(status))
    return [train(root / "base.yaml", base, "--resume")]


def eval_elsewhere(root: Path) -> list[list[str]]:
    (root / "data").mkdir()
    shutil.copy(tiny_data(root), root / "data" / "tiny.npz")
    config = tiny_config(Path("data/tiny.npz"))  # relative to the config's folder
    (root / "cfg.yaml").write_text(yaml.safe_dump(config))
    done = anybind(train(root / "cfg.yaml", root / "run"), root)
    assert done.returncode == 0, done.stdout + done.stderr
    return [["eval", str(root / "run")]]


def two_modality_adapt(root: Path) -> list[list[str]]:
    base = trained(root)
    path = manifest(root, image_rows(16), "target.jsonl")
    return [["adapt", str(base), "--method", "tent", "--data", str(path),
             "--modality", "image", "--out", str(root / "adapter")]]  # fmt: skip


def skip_too_few(root: Path) -> list[list[str]]:
    (root / "img").mkdir()
    np.save(root / "img" / "0.npy", np.zeros((8, 8), dtype=np.float32))
    rows = [{"image": f"img/{i}.npy", "caption": "a picture of one"} for i in range(4)]
    path = manifest(root, rows)
    cfg = manifest_config(
        root, path, {"image": "image", "text": "caption"}, **{"data.cache": "memory"}
    )
    return [train(cfg, root / "run", "--skip-bad")]


CASES: list[Case] = [
    Case(
        "failed run (NaN loss at step 1): eval refuses it",
        failed_run,
        says=("failed at step", "--allow-incomplete"),
    ),
    Case(
        "--resume on a finished run",
        resume_finished,
        expect=0,
        says=("nothing to resume",),
        check=summary_unchanged,
        outputs=("out",),
    ),
    validation_case("space.dim 0", "space.dim", **{"space.dim": 0}),
    validation_case(
        "text max_chars 0",
        "modalities.text.options.max_chars",
        **{"modalities.text.options": {"max_chars": 0}},
    ),
    validation_case(
        "text encoder max_bytes 0", "max_bytes", **{"modalities.text.encoder.max_bytes": 0}
    ),
    validation_case(
        "duplicate class_names",
        "class_names",
        **{"data.class_names": ["zero", "one", "one", "three"]},
    ),
    validation_case("encoder width 0", "width", **{"modalities.image.encoder.width": 0}),
    validation_case("encoder width -8", "width", **{"modalities.image.encoder.width": -8}),
    validation_case("image size [0, 0]", "size", **{"modalities.image.options.size": [0, 0]}),
    validation_case("heads do not divide width", "heads", **{"modalities.text.encoder.heads": 3}),
    validation_case("optim.lr inf", "optim.lr", **{"optim.lr": float("inf")}),
    validation_case("optim.steps true", "optim.steps", **{"optim.steps": True}),
    validation_case(
        "objective option of another type",
        "not an option of objective type",
        objective={"type": "symile", "pairs": "all"},
    ),
    Case("non-UTF-8 JSONL", non_utf8(".jsonl"), says=("m.jsonl", "UTF-8")),
    Case("non-UTF-8 CSV", non_utf8(".csv"), says=("m.csv", "UTF-8")),
    Case("non-UTF-8 YAML config", non_utf8(".yaml"), says=("cfg.yaml", "UTF-8")),
    _bad_manifest_case(
        "ragged inline image array",
        [{"image": [[0.1, 0.2], [0.3]], "caption": "x", "label": 0}] * 4,
        ("m.jsonl", "row 1"),
    ),
    _bad_manifest_case(
        "string inline image array",
        [{"image": [["a", "b"], ["c", "d"]], "caption": "x", "label": 0}] * 4,
        ("m.jsonl", "row 1"),
    ),
    _bad_manifest_case(
        "complex inline image array",
        [{"image": [[{"re": 1}]], "caption": "x", "label": 0}] * 4,
        ("m.jsonl", "row 1"),
    ),
    _bad_manifest_case(
        "JSON label true",
        [{**r, "label": True} for r in image_rows(4)],
        ("m.jsonl", "row 1", "label true"),
    ),
    npz_case(
        "npz string labels not among the classes",
        {"images": np.zeros((4, 8, 8), np.float32), "labels": np.array(["a", "b", "c", "d"])},
        ("bad.npz", "label"),
    ),
    npz_case(
        "npz 2-D labels",
        {"images": np.zeros((4, 8, 8), np.float32), "labels": np.zeros((4, 2))},
        ("bad.npz", "labels"),
    ),
    npz_case("npz 0-d array", {"images": np.float32(1.0), "labels": np.zeros(1)}, ("bad.npz",)),
    npz_case("zero-byte npz", {}, ("bad.npz",), raw=b""),
    audio_case(
        "audio sample_rate 0",
        {"waveform": [0.0] * 100, "sample_rate": 0},
        ("m.jsonl", "row 1", "sample_rate"),
    ),
    audio_case(
        "audio sample_rate -8000",
        {"waveform": [0.0] * 100, "sample_rate": -8000},
        ("m.jsonl", "row 1", "sample_rate"),
    ),
    audio_case(
        "audio sample_rate not a number",
        {"waveform": [0.0] * 100, "sample_rate": "fast"},
        ("m.jsonl", "row 1", "sample_rate"),
    ),
    audio_case(
        "inline waveform of 1e30",
        {"waveform": [1e30] * 100, "sample_rate": 8000},
        ("m.jsonl", "row 1"),
    ),
    Case("PNG decompression bomb", png_bomb, says=("bomb.png", "decompression bomb")),
    adapter_case("adapter.json missing keys", '{"method": "tent"}', ("adapter.json",)),
    adapter_case("adapter.json not an object", "[1, 2]", ("adapter.json",)),
    Case(
        "checkpoint state.json without step",
        state_without_step,
        says=("state.json", "step"),
        outputs=("out",),
    ),
    Case(
        "run config and weights disagree in shape",
        shape_mismatch,
        says=("weights do not fit the config",),
        outputs=("out",),
    ),
    Case("--shots 0", shots("0"), says=("--shots",)),
    Case("--shots -3", shots("-3"), says=("--shots",)),
    Case("!!python tag in a dotted override", python_tag, says=("optim.lr",)),
    Case(
        "torn last line in metrics.jsonl, then --resume", torn_metrics, expect=0, says=("trained",)
    ),
    Case(
        "full disk during training",
        full_disk,
        says=("No space left on device",),
        needs_mount=True,
        outputs=("disk",),
    ),
    Case(
        "read-only --out",
        read_only,
        says=("Read-only file system",),
        needs_mount=True,
        outputs=("ro",),
    ),
    Case(
        "checkpoints/latest pointing outside the run",
        latest_outside,
        says=("latest",),
        outputs=("out",),
    ),
    _bad_manifest_case(
        "duplicate sample ids",
        [{**r, "id": "same"} for r in image_rows(4)],
        ("m.jsonl", "row 2", "used twice"),
    ),
    Case(
        "eval from another directory (relative data paths)",
        eval_elsewhere,
        expect=0,
        says=("Zero-shot",),
    ),
    Case(
        "adapt a manifest holding image (and text) with --modality",
        two_modality_adapt,
        expect=0,
        says=("adapter written",),
    ),
    Case(
        "--skip-bad leaves too few samples",
        skip_too_few,
        says=("1 usable training sample", "3 unreadable"),
    ),
    Case("anybind --version", lambda root: [["--version"]], expect=0, says=(r"\d+\.\d+",)),
]


# ---------------------------------------------------------------- running


def anybind(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200"}
    return subprocess.run([sys.executable, "-m", "anybind.cli.main", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip


def snapshot(root: Path, outputs: tuple[str, ...]) -> dict[str, str]:
    """sha256 of every file under root except the case's outputs (and mounts)."""
    hashes = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts and rel.parts[0] in outputs or not path.is_file():
            continue
        hashes[str(rel)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def message_of(done: subprocess.CompletedProcess) -> str:
    """The line a user reads: the error line (typer's usage errors sit inside a box), else the
    first line of output."""
    text = (done.stderr + "\n" + done.stdout).strip()
    lines = [re.sub(r"[\u2500-\u257f]+", " ", line).strip() for line in text.splitlines()]
    lines = [" ".join(line.split()) for line in lines if line.strip(" ")]
    wanted = [line for line in lines if line.startswith(("error", "Invalid value"))]
    return " ".join((wanted or lines)[:1])[:300]


def run_case(case: Case) -> Outcome:
    root = Path(tempfile.mkdtemp(prefix="anybind-bad-"))
    started = time.perf_counter()
    try:
        try:
            commands = case.build(root)
        except NotMounted:
            return Outcome(case.name, -1, "not run: cannot mount a tmpfs here", True)
        for command in commands[:-1]:
            anybind(command, root)
        before = snapshot(root, case.outputs + ("base",))
        workdir = root / case.cwd if case.cwd else root
        workdir.mkdir(exist_ok=True)
        done = anybind(commands[-1], workdir)
        after = snapshot(root, case.outputs + ("base",))
        message = message_of(done)
        output = done.stdout + done.stderr
        problems = []
        if done.returncode != case.expect:
            problems.append(f"exit code {done.returncode}, expected {case.expect}")
        if "Traceback" in output:
            problems.append("bare traceback")
        problems += [f"message lacks /{s}/" for s in case.says if not re.search(s, output)]
        if before != after:
            changed = sorted(set(before.items()) ^ set(after.items()))
            problems.append(f"changed outside the output: {changed[0][0]}")
        if case.check is not None and (problem := case.check(root)):
            problems.append(problem)
        return Outcome(case.name, done.returncode, message, not problems, problems,
                       time.perf_counter() - started)  # fmt: skip
    finally:
        for mount in ("disk", "ro"):
            if (root / mount).is_mount():
                subprocess.run(["umount", str(root / mount)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="*", help="run the cases whose name holds one of these")
    parser.add_argument("--json", type=Path, help="write the outcomes here")
    args = parser.parse_args()
    cases = [c for c in CASES if not args.only or any(o in c.name for o in args.only)]
    outcomes = []
    for case in cases:
        outcome = run_case(case)
        outcomes.append(outcome)
        verdict = "ok  " if outcome.ok else "FAIL"
        print(f"{verdict} {case.name} ({outcome.seconds:.0f} s) {'; '.join(outcome.problems)}",
              flush=True)  # fmt: skip
    print("\n| input | exit code | message |\n|---|---|---|")
    for o in outcomes:
        message = o.message.replace("|", "\\|")
        mark = "" if o.ok else " **FAIL: " + "; ".join(o.problems) + "**"
        print(f"| {o.case} | {o.exit_code} | {message}{mark} |")
    failed = [o for o in outcomes if not o.ok]
    tracebacks = sum("bare traceback" in p for o in outcomes for p in o.problems)
    print(f"\n{len(outcomes)} cases, {len(failed)} failed, {tracebacks} bare tracebacks")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([o.__dict__ for o in outcomes], indent=2))
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
