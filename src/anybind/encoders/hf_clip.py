"""The two towers of a pretrained CLIP, each with its projection: images / texts → CLIP's space.

`clip_vision` (image) and `clip_text` (text) load one tower of a transformers CLIP checkpoint at
`path` (a local folder or a hub id; float32, with `from_pretrained`):
- a full `CLIPModel` checkpoint (`model_type` "clip"): `CLIPVisionModelWithProjection` /
  `CLIPTextModelWithProjection` with that tower's sub-config, whose `projection_dim` is set to the
  full config's (the sub-configs carry a default of 512 that need not match the weights); the
  other tower's weights and `logit_scale` are skipped;
- a tower saved on its own ("clip_vision_model" / "clip_text_model", with projection weights).
A checkpoint without the projection weights (`visual_projection` / `text_projection`) is refused:
the towers are only aligned with them. Anything but a CLIP checkpoint is refused too.

Output: (B, projection_dim), `image_embeds` / `text_embeds`: exactly what
`CLIPModel.get_image_features` / `get_text_features` give, not yet normalised (the space's tower
normalises). `embed_dim` is `projection_dim`, so a space of `dim: projection_dim` with projection
`identity` is CLIP's own space.

Image input: float (B, C, H, W) in [0, 1]; resized, channel-matched and normalised exactly as
`hf_vision` does (its `HFVision.pixel_values`: `image_mean`/`image_std` of the folder's
`preprocessor_config.json`, else CLIP's statistics). The image is squashed to the model's square
`image_size`, not centre-cropped as CLIP's own processor does: crop non-square images first.

Text input: list[str], tokenised by `AutoTokenizer` from the same path, padded to the longest text
of the batch and truncated to `max_length` tokens (default: the model's
`max_position_embeddings`, 77 for OpenAI's CLIPs; more is refused).

`read_logit_scale(path)` gives the full checkpoint's `logit_scale` (a log, as CLIP stores it),
which `anybind init` copies into the space (see anybind.recipes.init).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    TransformersOptions,
    apply_activation_checkpointing,
    quiet_transformers,
    tokenize,
)
from anybind.encoders.hf_vision import HFVision
from anybind.errors import ConfigError
from anybind.modalities.base import Modality
from anybind.options import Size

if TYPE_CHECKING:
    from transformers import PretrainedConfig, PreTrainedModel

TowerKind = Literal["vision", "text"]
#: the model types a tower may come from: the full CLIP, or that tower saved on its own
TOWER_TYPES: dict[str, tuple[str, str]] = {
    "vision": ("clip", "clip_vision_model"),
    "text": ("clip", "clip_text_model"),
}
PROJECTION = {"vision": "visual_projection", "text": "text_projection"}


def first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def looks_local(path: str) -> bool:
    """A path meant as a folder on this machine rather than a hub id."""
    return os.path.isabs(path) or path.startswith((".", "~")) or Path(path).exists()


def clip_config(
    location: str, tower: TowerKind | None, *, key: str = "encoder.path"
) -> PretrainedConfig:
    """The config at `location`, checked to hold this CLIP tower (None: a full CLIPModel);
    one-line errors naming `key`."""
    if looks_local(location) and not Path(location).expanduser().is_dir():
        raise ConfigError(f"no model folder at '{location}'", key=key)
    quiet_transformers()
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(location)
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load a CLIP model from '{location}': {first_line(exc)}", key=key
        ) from None
    model_type = str(config.model_type)
    allowed = TOWER_TYPES[tower] if tower else ("clip",)
    if model_type not in allowed:
        what = f"CLIP {tower} tower" if tower else "full CLIPModel (the one that holds logit_scale)"
        raise ConfigError(
            f"'{location}' holds a '{model_type}' model, not a {what} "
            f"(model_type {' or '.join(allowed)})",
            key=key,
        )
    return config


def tower_config(config: PretrainedConfig, tower: TowerKind) -> PretrainedConfig:
    """The config of one tower; from a full CLIP config, with the full config's projection_dim."""
    if config.model_type != "clip":
        return config
    sub = copy.deepcopy(config.vision_config if tower == "vision" else config.text_config)
    sub.projection_dim = config.projection_dim
    return sub


@contextlib.contextmanager
def quiet_load_report() -> Iterator[None]:
    """transformers logs a report of every skipped tensor (here: the other tower's); the missing
    ones, which matter, are checked by the caller."""
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


def load_tower(location: str, config: PretrainedConfig, tower: TowerKind) -> PreTrainedModel:
    """The tower with its projection, float32; refused when the checkpoint lacks the projection."""
    from transformers import CLIPTextModelWithProjection, CLIPVisionModelWithProjection

    cls = CLIPVisionModelWithProjection if tower == "vision" else CLIPTextModelWithProjection
    with quiet_load_report():
        model, info = cls.from_pretrained(
            location,
            config=tower_config(config, tower),
            dtype=torch.float32,
            output_loading_info=True,
        )
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        what = "projection" if any(PROJECTION[tower] in k for k in missing) else "weights"
        raise ConfigError(
            f"the checkpoint '{location}' has no trained {tower} {what} ({missing[0]}, "
            f"{len(missing)} missing): a CLIP {tower} tower needs them",
            key="encoder.path",
        )
    return model


class CLIPVisionOptions(TransformersOptions):
    type: Literal["clip_vision"] = "clip_vision"
    #: a full CLIPModel checkpoint (local folder or hub id), or a CLIPVisionModelWithProjection
    path: str


@ENCODERS.register("clip_vision")
class CLIPVision(HFVision):
    """CLIP's vision tower + visual projection; pixel handling inherited from `hf_vision`."""

    Options = CLIPVisionOptions  # type: ignore[assignment]
    modalities = ("image",)
    pretrained = True

    def __init__(self, options: CLIPVisionOptions, modality: Modality):  # type: ignore[override]
        clip_config(options.location, "vision")  # one-line errors before HFVision loads it
        super().__init__(options, modality)  # type: ignore[arg-type]
        self.embed_dim = int(self.model.config.projection_dim)

    def _load(self, config: Any) -> PreTrainedModel:
        return load_tower(self.options.location, config, "vision")

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=self.pixel_values(batch)).image_embeds


class CLIPTextOptions(TransformersOptions):
    type: Literal["clip_text"] = "clip_text"
    #: a full CLIPModel checkpoint (local folder or hub id, with its tokenizer files), or a
    #: CLIPTextModelWithProjection
    path: str
    #: tokens per text, special ones included (default: the model's max_position_embeddings)
    max_length: Size | None = None


@ENCODERS.register("clip_text")
class CLIPText(Encoder):
    """CLIP's text tower + text projection, with the checkpoint's own tokenizer."""

    Options = CLIPTextOptions
    modalities = ("text",)
    pretrained = True
    options: CLIPTextOptions

    def __init__(self, options: CLIPTextOptions, modality: Modality):
        super().__init__(options, modality)
        config = clip_config(options.location, "text")
        positions = int(tower_config(config, "text").max_position_embeddings)
        if options.max_length is not None and options.max_length > positions:
            raise ConfigError(
                f"{options.max_length} tokens do not fit the model's {positions} positions",
                key="encoder.max_length",
            )
        self.max_length = options.max_length or positions
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(options.location)
        except (OSError, ValueError) as exc:
            raise ConfigError(
                f"cannot load the tokenizer of '{options.location}': {first_line(exc)}",
                key="encoder.path",
            ) from None
        self.model = load_tower(options.location, config, "text")
        apply_activation_checkpointing(self.model, options)
        self.embed_dim = int(self.model.config.projection_dim)

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        encoded = tokenize(self.tokenizer, texts, self.max_length)
        return {k: v.to(self.device) for k, v in encoded.items()}

    def forward(self, batch: list[str]) -> torch.Tensor:
        return self.model(**self.tokenize(batch)).text_embeds


def read_logit_scale(location: str, *, key: str = "encoder.path") -> torch.Tensor:
    """The `logit_scale` tensor (0-dim, float32; log(1/τ) as CLIP stores it) of the full CLIP
    checkpoint at `location`: read from its safetensors file (or shard) alone, else from the
    whole `CLIPModel.from_pretrained`."""
    clip_config(location, None, key=key)
    file = safetensors_file(location, "logit_scale")
    if file is not None:
        from safetensors import safe_open

        with safe_open(file, framework="pt") as f:
            if "logit_scale" in f.keys():  # noqa: SIM118 (a safe_open handle is no dict)
                return f.get_tensor("logit_scale").to(torch.float32).reshape(())
    from transformers import CLIPModel

    with quiet_load_report():
        model = CLIPModel.from_pretrained(location, dtype=torch.float32)
    return model.logit_scale.detach().to(torch.float32).reshape(()).clone()


def safetensors_file(location: str, tensor: str) -> str | None:
    """The local safetensors file (downloaded or cached) that holds `tensor`, if any."""
    single = _cached(location, "model.safetensors")
    if single is not None:
        return single
    index = _cached(location, "model.safetensors.index.json")
    if index is None:
        return None
    with open(index, encoding="utf-8") as f:
        shard = json.load(f).get("weight_map", {}).get(tensor)
    return _cached(location, shard) if shard else None


def _cached(location: str, name: str) -> str | None:
    if Path(location).is_dir():
        path = Path(location) / name
        return str(path) if path.is_file() else None
    from transformers.utils import cached_file

    try:
        return cached_file(
            location,
            name,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except (OSError, ValueError):
        return None
