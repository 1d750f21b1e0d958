"""Grow a trained space with new modalities without touching it: `anybind extend RUN --config
NEW.yaml --out RUN2`.

    anybind extend runs/demo --config grow-pen.yaml --out runs/demo-pen

NEW.yaml holds only what is new: the new `modalities` (each a tower: trained from scratch, or a
pretrained encoder with a tuner, see `recipes/tower_init.py`), the base modalities they are bound
to (`anchors`, default text; several at once is LanguageBind / ULIP-2 style multi-view binding),
and `objective`, `data`, `optim`, `train` and `eval` as in any run config. The extended config is
the base run's config with its modalities frozen (encoder, projection, temperature) plus the new
ones; unless NEW.yaml lists `objective.pairs` (or Symile's `objective.modalities`), every new
modality is paired with every anchor. Any objective can bind. RUN2 is a run like any other
(evaluate, adapt, embed, serve it); its config.yaml records the base (`base.path`, relative to
RUN2, and the SHA-256 of the base weights) and its model.safetensors holds only the new towers.
Training proves the base tensors unchanged (a fingerprint before and after).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from anybind.checkpoint import WEIGHTS, file_sha256
from anybind.config import Config, apply_overrides, config_from_dict, load_config
from anybind.config.load import read_yaml_mapping, resolve_data_paths
from anybind.errors import ConfigError
from anybind.recipes.train import TrainSummary, train
from anybind.run_status import require_complete
from anybind.space.io import CONFIG

#: the sections an extension config may hold
EXTENSION_KEYS = (
    "modalities", "anchors", "fusion", "predictor", "objective", "data", "optim", "train",
    "eval",
)  # fmt: skip


def extended_config(
    base_dir: str | Path,
    extension: str | Path | dict[str, Any],
    out: str | Path,
    overrides: list[str] | None = None,
) -> Config:
    """The config of the run that extends `base_dir` with what `extension` holds."""
    base_dir, out = Path(base_dir), Path(out)
    if isinstance(extension, dict):
        file, folder, raw = None, Path.cwd(), dict(extension)
    else:
        file, folder = str(extension), Path(extension).resolve().parent
        raw = read_yaml_mapping(Path(extension))
    raw = apply_overrides(raw, overrides or [], file=file)
    unknown = [k for k in raw if k not in EXTENSION_KEYS]
    if unknown:
        raise ConfigError(
            f"not a section of an extension (sections: {', '.join(EXTENSION_KEYS)})",
            key=unknown[0],
            file=file,
        )
    base_config = load_config(base_dir / CONFIG)
    base = base_config.model_dump(mode="json")
    fusion = raw.get("fusion")
    predictor = raw.get("predictor")
    new = new_modalities(raw, base, file, fusion_only=fusion is not None or predictor is not None)
    anchors = anchor_modalities(raw, base, file)
    bound = [*new, *([fusion.get("name", "joint")] if isinstance(fusion, dict) else [])]
    merged = {
        "modalities": {
            **{
                m: {**mc, "freeze_encoder": True, "freeze_projection": True}
                for m, mc in base["modalities"].items()
            },
            **new,
        },  # fmt: skip
        "space": {**base["space"], "learn_temperature": False},
        "objective": binding_objective(
            raw.get("objective") or {}, bound, anchors, predicted(predictor)
        ),
        "fusion": fusion,
        "predictor": predictor,
        "backbone": base.get("backbone"),
        "data": {"class_names": base["data"]["class_names"], **(raw.get("data") or {})},
        "optim": raw.get("optim"),
        "train": raw.get("train") or {},
        "eval": merged_eval(base["eval"], raw.get("eval") or {}),
        "base": {
            "path": os.path.relpath(base_dir.resolve(), out.resolve()),
            "weights_sha256": file_sha256(base_dir / WEIGHTS),
            "modalities": list(base["modalities"]),
            "pairs": [list(p) for p in base_config.trained_pairs()],
        },
    }
    config = config_from_dict(merged, file=file)
    resolve_data_paths(config, folder)
    return config


def new_modalities(
    raw: dict[str, Any], base: dict[str, Any], file: str | None, *, fusion_only: bool = False
) -> dict[str, Any]:
    new = raw.get("modalities", {} if fusion_only else None)
    if not isinstance(new, dict) or not (new or fusion_only):
        raise ConfigError("an extension adds at least one modality", key="modalities", file=file)
    for name in new:
        if name in base["modalities"]:
            raise ConfigError(
                "is already a modality of the base run (extending adds new ones)",
                key=f"modalities.{name}",
                file=file,
            )
    return new


def anchor_modalities(raw: dict[str, Any], base: dict[str, Any], file: str | None) -> list[str]:
    default = ["text"] if "text" in base["modalities"] else []
    anchors = raw.get("anchors", default)
    if isinstance(anchors, str):
        anchors = [anchors]
    if not isinstance(anchors, list) or not anchors:
        raise ConfigError("name the base modalities to bind to", key="anchors", file=file)
    for a in anchors:
        if a not in base["modalities"]:
            raise ConfigError(
                f"'{a}' is not a modality of the base run ({', '.join(base['modalities'])})",
                key="anchors",
                file=file,
            )
    return list(anchors)


def predicted(predictor: Any) -> list[list[str]]:
    """A predictor's pairs: each predicted embedding against the real one."""
    if not isinstance(predictor, dict) or not isinstance(predictor.get("modalities"), list):
        return []
    return [[f"{m}_predicted", m] for m in predictor["modalities"]]


def binding_objective(
    objective: dict[str, Any],
    new: list[str],
    anchors: list[str],
    predictions: list[list[str]] | None = None,
) -> dict:
    """The objective with its pairs (or Symile's tuple) filled when unset: every new modality
    (and fusion) with every anchor, and every predicted embedding with the real one."""
    objective = dict(objective)
    if objective.get("type") == "symile":
        objective.setdefault("modalities", [*new, *anchors])
    elif "pairs" not in objective:
        objective["pairs"] = [[n, a] for n in new for a in anchors] + (predictions or [])
    return objective


def merged_eval(base: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The base's evaluation settings with the extension's on top (templates merged)."""
    templates = {**base.get("templates", {}), **new.get("templates", {})}
    return {**base, **new, "templates": templates}


def extend(
    run_dir: str | Path,
    extension: str | Path | dict[str, Any],
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    skip_bad: bool | None = None,
    progress: bool = True,
) -> TrainSummary:
    """Train the new modalities of `extension` against the frozen run `run_dir` into `out`."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise ConfigError(f"{run_dir} is not a run folder (no {CONFIG})", key="RUN_DIR")
    require_complete(run_dir)
    config = extended_config(run_dir, extension, out, overrides)
    if not trains_anything(config):
        return untrained_run(config, Path(out))
    return train(config, out, resume=resume, skip_bad=skip_bad, progress=progress)


def trains_anything(config: Config) -> bool:
    """False for an extension that only adds a parameter-free fusion (`mean`)."""
    assert config.base is not None
    new = set(config.modalities) - set(config.base.modalities)
    fusion = config.fusion is not None and config.fusion.type != "mean"
    return bool(new) or fusion or config.predictor is not None


def untrained_run(config: Config, out: Path) -> TrainSummary:
    """An extension with nothing to train, written as a complete run of 0 steps."""
    import time

    from anybind.recipes.init import check_out, write_run
    from anybind.space import Space
    from anybind.space.io import attach_base

    started = time.perf_counter()
    check_out(out)
    space = Space(config)
    attach_base(space, out)
    record = {"initialised": "an extension with nothing to train (a parameter-free fusion)",
              "base": config.base.path if config.base else None,
              "wall_s": time.perf_counter() - started}  # fmt: skip
    write_run(space, out, record)
    return TrainSummary(0, 0.0, float("nan"), 0.0, record["wall_s"], 0, 0, None)
