"""A run from pretrained, already-aligned towers, trained 0 steps: `anybind init CONFIG --out RUN`.

    anybind init src/anybind/configs/clip.yaml --out runs/clip
    anybind eval runs/clip --data photos.jsonl

The run folder is what `anybind train` leaves, so `load_space`, `anybind eval`, `adapt`, `embed`,
`index`, `search` and `serve` take it as they take a trained one.

What the config must hold (anything else is refused with the key to change, before any model is
loaded), since nothing here trains and a random tower or head would stay random:
- every modality's encoder is a tower of an aligned checkpoint (`ALIGNED_TYPES`: `clip_vision`,
  `clip_text`), all of them from one checkpoint (the same `path`): only the towers of one CLIP
  share a space;
- `freeze_encoder: true` (the weights are then reloaded from `path`, not copied into the run);
- projection `identity`, and `space.dim` equal to the checkpoint's `projection_dim`: the towers'
  own projections map into the space.
`data.train` and `optim` may be left out of an init config: only training reads them. To keep the
saved config.yaml a valid config, `init` then fills them with placeholders: `data.train` is one
manifest source at `TRAINING-DATA-NOT-SET.jsonl` (beside the config; no such file, so training
from the saved config stops and names it until it is set, e.g. `data.train.0.path=pairs.jsonl`)
and `optim` is `{epochs: 1}`. Sections the config gives are kept as given.

The logit scale: the space's `log_logit_scale` is the checkpoint's `logit_scale` tensor, copied
bit for bit (CLIP already stores log(1/τ)), and the saved config's `space.init_temperature` is
set to exp(-logit_scale), so that the config alone says the same. The space reads its scale
clamped to `space.max_logit_scale` (100 by default, CLIP's own cap): a checkpoint whose scale
exceeds it by more than float rounding (OpenAI's CLIPs store 4.6052, 100.0003, which reads as
100) is refused with the key to raise; one below 1 (a negative log) cannot be held and is refused.

The folder (written under a temporary name beside `out`, then renamed into place, so `out` is
either absent or complete): config.yaml, model.safetensors (only `log_logit_scale`: the frozen
pretrained towers are not stored), status.json (complete, step 0), summary.json (the training
summary's fields: 0 steps, no loss), init.json (where the towers and the scale came from) and
environment.json. An `out` that exists and is not empty is refused.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import yaml

from anybind.checkpoint import atomic_write_text
from anybind.config import Config, load_config
from anybind.encoders.hf_clip import TowerKind, clip_config, looks_local, read_logit_scale
from anybind.errors import AnybindError, ConfigError
from anybind.recipes.run_folder import write_environment, write_summary
from anybind.recipes.train import TrainSummary
from anybind.run_status import RunStatus, write_status
from anybind.space import Space, save_space

#: encoder types whose towers come aligned from their checkpoint (and which hold its scale)
ALIGNED_TYPES = ("clip_vision", "clip_text")
TOWER_KINDS: dict[str, TowerKind] = {"clip_vision": "vision", "clip_text": "text"}
#: the training data an init config may leave out, filled in so the saved config stays valid
TRAINING_PLACEHOLDER = "TRAINING-DATA-NOT-SET.jsonl"
INIT = "init.json"
#: how far above space.max_logit_scale a checkpoint's scale may be (float rounding of CLIP's cap)
SCALE_ROUNDING = 1e-4


def init_run(
    config: Config | str | Path, out: str | Path, overrides: list[str] | None = None
) -> Path:
    """Write the run folder `out` from the config's pretrained towers; return its path.
    `overrides` (dotted, as for `anybind train`) apply when `config` is a path."""
    started = time.perf_counter()
    out = Path(out)
    config = (
        config.model_copy(deep=True)
        if isinstance(config, Config)
        else load_config(config, [*training_placeholders(Path(config)), *(overrides or [])])
    )
    location, key = check_towers(config)
    check_out(out)
    scale = read_logit_scale(location, key=key)
    check_scale(float(scale), config)
    config.space.init_temperature = math.exp(-float(scale))
    space = Space(config)
    with torch.no_grad():
        space.log_logit_scale.copy_(scale)
    record = init_record(space, location, float(scale), time.perf_counter() - started)
    write_run(space, out, record)
    return out


def training_placeholders(path: Path) -> list[str]:
    """Overrides that fill `data.train` and `optim` when the config file leaves them out."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return []  # load_config says what is wrong with the file
    if not isinstance(raw, dict):
        return []
    fills = []
    data = raw.get("data", {})
    if isinstance(data, dict) and "train" not in data:
        fills.append(f"data.train=[{{type: manifest, path: {TRAINING_PLACEHOLDER}}}]")
    if "optim" not in raw:
        fills.append("optim.epochs=1")
    return fills


def check_towers(config: Config) -> tuple[str, str]:
    """Every tower is a frozen aligned tower with an identity projection, all from one
    checkpoint whose projection_dim is space.dim; (that checkpoint's location, its config key)."""
    found: dict[str, str] = {}  # modality → normalised location
    for name, mc in config.modalities.items():
        where = f"modalities.{name}"
        kind = mc.encoder["type"]
        if kind not in ALIGNED_TYPES:
            raise ConfigError(
                f"init trains nothing, so every tower must come aligned from one pretrained "
                f"checkpoint ({', '.join(ALIGNED_TYPES)}); a '{kind}' tower would stay as it is",
                key=f"{where}.encoder.type",
            )
        if not mc.freeze_encoder:
            raise ConfigError(
                "init trains nothing: set freeze_encoder: true (the tower is then reloaded from "
                "its path, not copied into the run folder)",
                key=f"{where}.freeze_encoder",
            )
        if mc.projection.type != "identity":
            raise ConfigError(
                f"a '{mc.projection.type}' projection would start random and init trains "
                "nothing: use identity (the tower's own projection maps into the space)",
                key=f"{where}.projection.type",
            )
        location = mc.encoder_options().location  # type: ignore[attr-defined]
        clip_config(location, TOWER_KINDS[kind], key=f"{where}.encoder.path")
        found[name] = same_place(location)
    first, location = next(iter(found.items()))
    for name, other in found.items():
        if other != location:
            raise ConfigError(
                f"'{other}' is not the checkpoint of modalities.{first} ('{location}'): only "
                "the towers of one CLIP are aligned with each other",
                key=f"modalities.{name}.encoder.path",
            )
    key = f"modalities.{first}.encoder.path"
    projection_dim = int(clip_config(location, None, key=key).projection_dim)
    if projection_dim != config.space.dim:
        raise ConfigError(
            f"{config.space.dim} is not the checkpoint's projection_dim {projection_dim}, "
            f"the width of its space: set space.dim: {projection_dim}",
            key="space.dim",
        )
    return location, key


def same_place(location: str) -> str:
    """A location two towers can be compared by: local folders resolved, hub ids as they are."""
    return os.path.realpath(os.path.expanduser(location)) if looks_local(location) else location


def check_out(out: Path) -> None:
    if out.is_file() or (out.is_dir() and any(out.iterdir())):
        raise AnybindError(
            f"{out} already exists and is not empty: init writes a new run folder, choose "
            "another --out"
        )


def check_scale(scale: float, config: Config) -> None:
    """The space must be able to hold the checkpoint's log scale (see the module docstring)."""
    cap = config.space.max_logit_scale
    if scale < 0:
        raise ConfigError(
            f"the checkpoint's logit_scale {scale:.4g} is below 0 (a scale below 1), which "
            "the space cannot hold: it keeps log(scale) in [0, log(space.max_logit_scale)]"
        )
    if math.exp(scale) > cap * (1 + SCALE_ROUNDING):
        raise ConfigError(
            f"the checkpoint's logit scale {math.exp(scale):.6g} is above {cap:g}, where the "
            f"space would clamp it: set space.max_logit_scale to at least {math.exp(scale):.6g}",
            key="space.max_logit_scale",
        )


def init_record(space: Space, location: str, scale: float, wall_s: float) -> dict[str, Any]:
    towers = {
        name: {
            "type": mc.encoder["type"],
            "path": mc.encoder["path"],
            "embed_dim": int(space.towers[name].encoder.embed_dim),
        }
        for name, mc in space.config.modalities.items()
    }
    return {
        "initialised": "from pretrained, already-aligned towers; nothing was trained",
        "checkpoint": location,
        "towers": towers,
        "log_logit_scale": scale,
        "logit_scale": math.exp(scale),
        "logit_scale_read": float(space.logit_scale().detach()),
        "wall_s": wall_s,
    }


def write_run(space: Space, out: Path, record: dict[str, Any]) -> None:
    """Every file of the run in a temporary folder beside `out`, renamed into place last."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.init-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        save_space(space, tmp)
        write_environment(tmp)
        summary = TrainSummary(
            steps=0,
            epochs=0.0,
            final_loss=None,  # type: ignore[arg-type]  # no loss: nothing was trained
            samples_per_s=0.0,
            wall_s=record["wall_s"],
            train_samples=0,
            skipped_samples=0,
            resumed_from=None,
        )
        write_summary(tmp, asdict(summary))
        atomic_write_text(tmp / INIT, json.dumps(record, indent=2))
        write_status(tmp, RunStatus("complete"))
        check_out(out)  # nothing appeared there meanwhile
        os.replace(tmp, out)  # an empty `out` folder is replaced too
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_init(run_dir: str | Path) -> dict[str, Any]:
    """The init.json of a run made by `init_run`."""
    path = Path(run_dir) / INIT
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AnybindError(f"{path}: not the record of an init run ({exc})") from None
    if not isinstance(data, dict):
        raise AnybindError(f"{path}: not the record of an init run")
    return data
