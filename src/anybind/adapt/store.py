"""Adapter folders: what a method changed, saved apart from the unchanged base run.

    ADAPT_DIR/adapter.json          method, options, modality, classes, templates, tuners (name and
                                    options per tower), the base run and the SHA-256 of its weights
    ADAPT_DIR/adapter.safetensors   tuner.<tower>.<key>, tower.<tower>.<key>, head

Loading rebuilds the base space from its run folder, checks that its weights are the ones the
adapter was made on, attaches the tuners, loads their tensors and the tuned tower tensors, and
returns the adapted space with its `Adaptation`. Writes are atomic; reads never unpickle.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from anybind.adapt.base import Adaptation, make_context
from anybind.checkpoint import (
    WEIGHTS,
    atomic_write_text,
    file_sha256,
    load_weights,
    save_weights,
)
from anybind.errors import AnybindError
from anybind.space import Space, load_space

META = "adapter.json"
#: what loading an adapter reads from adapter.json, and its JSON type
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "method": str,
    "modality": str,
    "class_names": list,
    "templates": list,
    "tuners": dict,
    "tower_states": list,
    "base_run": str,
    "base_weights_sha256": str,
}
#: ids of the samples the adapter was made on, one per line (left out of `anybind eval --adapter`)
ADAPT_IDS = "adapt_ids.txt"
TENSORS = "adapter.safetensors"


def adaptation_tensors(adaptation: Adaptation) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for tower, tuner in adaptation.tuners.items():
        for key, value in tuner.state_dict().items():
            out[f"tuner.{tower}.{key}"] = value
    for tower, state in adaptation.tower_states.items():
        for key, value in state.items():
            out[f"tower.{tower}.{key}"] = value
    if adaptation.head is not None:
        out["head"] = adaptation.head
    return {k: v.detach().cpu().contiguous() for k, v in out.items()}


def save_adaptation(
    adaptation: Adaptation,
    out: str | Path,
    base_run: str | Path,
    extra: dict[str, Any] | None = None,
    adapt_ids: list[str] | None = None,
) -> Path:
    out, base_run = Path(out), Path(base_run)
    out.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": 1,
        "method": adaptation.method,
        "modality": adaptation.modality,
        "class_names": adaptation.class_names,
        "templates": adaptation.templates,
        "head_scale": adaptation.head_scale,
        "options": adaptation.options,
        "tuners": {
            tower: {"name": t.name, "options": t.options.model_dump()}
            for tower, t in adaptation.tuners.items()
        },
        "tower_states": sorted(adaptation.tower_states),
        "base_run": str(base_run.resolve()),
        "base_weights_sha256": file_sha256(base_run / WEIGHTS),
        "info": adaptation.info,
        **(extra or {}),
    }
    save_weights(adaptation_tensors(adaptation), out / TENSORS)
    atomic_write_text(out / ADAPT_IDS, "".join(f"{i}\n" for i in adapt_ids or []))
    atomic_write_text(out / META, json.dumps(meta, indent=2, default=str))
    return out


def read_meta(adapt_dir: Path) -> dict[str, Any]:
    path = adapt_dir / META
    if not path.is_file():
        raise AnybindError(f"{adapt_dir} is not an adapter folder (no {META})")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise AnybindError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise AnybindError(f"{path}: not a JSON object")
    missing = [key for key, kind in REQUIRED.items() if not isinstance(meta.get(key), kind)]
    if missing:
        raise AnybindError(f"{path}: missing or mistyped keys {missing}")
    return meta


def load_adapted(
    adapt_dir: str | Path, run_dir: str | Path | None = None, *, device: str = "cpu"
) -> tuple[Space, Adaptation]:
    """The base space of `run_dir` (default: the run the adapter was made on) with the adapter
    applied. Raises if the base weights differ from those the adapter was trained on."""
    adapt_dir = Path(adapt_dir)
    meta = read_meta(adapt_dir)
    run = Path(run_dir or meta["base_run"])
    if not (run / WEIGHTS).is_file():
        raise AnybindError(f"{adapt_dir}: base run {run} not found (pass the run folder)")
    if file_sha256(run / WEIGHTS) != meta["base_weights_sha256"]:
        raise AnybindError(
            f"{adapt_dir} was made on different base weights than {run / WEIGHTS} "
            "(SHA-256 mismatch)"
        )
    space = load_space(run, device=device)
    tensors = load_weights(adapt_dir / TENSORS)
    adaptation = apply_adapter(space, meta, tensors, source=str(adapt_dir / TENSORS))
    return space, adaptation


def apply_adapter(
    space: Space, meta: dict[str, Any], tensors: dict[str, torch.Tensor], *, source: str
) -> Adaptation:
    from anybind.tuners import build_tuner

    used: set[str] = set()
    tuners = {}
    for tower, spec in meta["tuners"].items():
        if tower not in space.towers:
            raise AnybindError(f"{source}: the adapter tunes tower '{tower}', not in this space")
        tuner = build_tuner(spec["name"], spec["options"])
        tuner.attach(space.towers[tower])
        prefix = f"tuner.{tower}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        used |= {prefix + k for k in state}
        tuner.load_state_dict(state)
        tuners[tower] = tuner
    states = {}
    for tower in meta["tower_states"]:
        prefix = f"tower.{tower}."
        state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        used |= {prefix + k for k in state}
        _, unexpected = space.towers[tower].load_state_dict(state, strict=False)
        if unexpected:
            raise AnybindError(f"{source}: tensors {unexpected[:5]} do not fit tower '{tower}'")
        states[tower] = state
    head = tensors.get("head")
    if head is not None:
        used.add("head")
    leftover = sorted(set(tensors) - used)
    if leftover:
        raise AnybindError(f"{source}: unexpected tensors {leftover[:5]}")
    space.eval()
    return Adaptation(
        method=meta["method"],
        modality=meta["modality"],
        class_names=list(meta["class_names"]),
        templates=list(meta["templates"]),
        tuners=tuners,
        tower_states=states,
        head=head,
        head_scale=float(meta.get("head_scale", 1.0)),
        options=meta.get("options", {}),
        info=meta.get("info", {}),
    )


def adapted_classifiers(space: Space, adaptation: Adaptation) -> dict[str, torch.Tensor]:
    """modality → (C, D) classifier of the adapted modality, for `evaluate_space`."""
    ctx = make_context(space, adaptation.modality, class_names=adaptation.class_names)
    return {adaptation.modality: adaptation.classifier(ctx)}


def adaptation_ids(adapt_dir: str | Path) -> set[str]:
    path = Path(adapt_dir) / ADAPT_IDS
    return set(path.read_text().splitlines()) if path.is_file() else set()


def load_space_with(
    run_dir: str | Path, adapter: str | Path | None = None, *, device: str = "cpu"
) -> Space:
    """The run's space, with the adapter applied when one is given (what embed, search and
    serve use)."""
    if adapter is None:
        return load_space(run_dir, device=device)
    return load_adapted(adapter, run_dir, device=device)[0]
