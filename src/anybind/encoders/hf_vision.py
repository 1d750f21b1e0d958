"""Pretrained Hugging Face image encoders (ViT, CLIP's vision tower, others): images → (B, hidden).

Which model is loaded depends on `model_type` in the config at `path` (a local folder or a hub id):
- "clip" (a full CLIPModel checkpoint): only the vision tower, `CLIPVisionModel` with
  `config.vision_config`; the text tower's weights are skipped.
- "clip_vision_model": `CLIPVisionModel`.
- "vit": `ViTModel`, with its pooler layer only when `pooling` is "pooler".
- anything else: `AutoModel` (e.g. DINOv2, BEiT), which must accept `pixel_values`.
Weights are loaded in float32.

Input: an image batch, float (B, C, H, W) in [0, 1] with C in {1, 3}. `forward` resizes it to
the model's `image_size` × `image_size` (bilinear, antialiased; the aspect ratio is not kept, so a
square `image.size` avoids distortion), repeats one channel to three, and normalises with
`image_mean`/`image_std` from the `preprocessor_config.json` next to the weights when there is one,
else the CLIP statistics for CLIP models and the ImageNet ones otherwise.

Output: (B, hidden_size) by `pooling`:
- "pooler": the model's own `pooler_output` (CLIP: post-layernorm CLS; ViT: dense+tanh on CLS).
  A checkpoint without trained pooler weights is refused (use "cls").
- "cls": `last_hidden_state[:, 0]`, the class token (for CLIP, before the post-layernorm).
- "mean": the mean of `last_hidden_state` over all positions (class token included).
For convolutional models whose `last_hidden_state` is a (B, C, H, W) map, "cls" and "mean" both
average it over H and W.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch
import torch.nn.functional as F

from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    TransformersOptions,
    apply_activation_checkpointing,
    quiet_transformers,
)
from anybind.errors import ConfigError
from anybind.modalities.base import Modality

if TYPE_CHECKING:
    from transformers import PreTrainedModel

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_CLIP_TYPES = ("clip", "clip_vision_model")


def read_preprocessor_config(path: str) -> dict[str, Any]:
    """The preprocessor_config.json of a model folder (or a cached hub id) as a dict; {} if none."""
    file: str | None
    if Path(path).is_dir():
        local = Path(path) / "preprocessor_config.json"
        file = str(local) if local.is_file() else None
    else:
        from transformers.utils import cached_file

        try:
            file = cached_file(
                path,
                "preprocessor_config.json",
                _raise_exceptions_for_missing_entries=False,
                _raise_exceptions_for_connection_errors=False,
            )
        except OSError:
            file = None
    if file is None:
        return {}
    with open(file, encoding="utf-8") as f:
        data = json.load(f)
    return data if isinstance(data, dict) else {}


class HFVisionOptions(TransformersOptions):
    type: Literal["hf_vision"] = "hf_vision"
    #: A local folder (config.json, weights, optionally preprocessor_config.json) or a hub id.
    path: str
    pooling: Literal["pooler", "cls", "mean"] = "pooler"


@ENCODERS.register("hf_vision")
class HFVision(Encoder):
    Options = HFVisionOptions
    modalities = ("image",)
    pretrained = True
    options: HFVisionOptions

    def __init__(self, options: HFVisionOptions, modality: Modality):
        super().__init__(options, modality)
        quiet_transformers()
        from transformers import AutoConfig

        try:
            config = AutoConfig.from_pretrained(options.location)
            self.model_type = str(config.model_type)
            self.model = self._load(config)
            apply_activation_checkpointing(self.model, options)
        except OSError as exc:
            raise ConfigError(
                f"cannot load a vision model from '{options.location}': {exc}", key="encoder.path"
            ) from exc
        vcfg = self.model.config
        size = getattr(vcfg, "image_size", 224)
        self.image_size: tuple[int, int] = (
            (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        )
        self.num_channels = int(getattr(vcfg, "num_channels", 3))
        mean, std = self._norm_stats()
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)
        self.embed_dim = int(getattr(vcfg, "hidden_size", 0) or vcfg.hidden_sizes[-1])

    def _load(self, config: Any) -> PreTrainedModel:
        from transformers import AutoModel, CLIPVisionModel, ViTModel

        path, pooling = self.options.location, self.options.pooling
        model: PreTrainedModel
        if self.model_type in _CLIP_TYPES:
            # CLIPVisionConfig.from_pretrained takes config.vision_config out of a full CLIP config,
            # and the full model's "vision_model.*" weights match CLIPVisionModel's names.
            model, info = CLIPVisionModel.from_pretrained(
                path, dtype=torch.float32, output_loading_info=True
            )
        elif self.model_type == "vit":
            model, info = ViTModel.from_pretrained(
                path,
                dtype=torch.float32,
                add_pooling_layer=pooling == "pooler",
                output_loading_info=True,
            )
        else:
            model, info = AutoModel.from_pretrained(
                path, dtype=torch.float32, output_loading_info=True
            )
        if pooling == "pooler" and any("pooler" in k for k in info.get("missing_keys", ())):
            raise ConfigError(
                f"the checkpoint '{path}' has no trained pooler weights; use "
                "pooling 'cls' or 'mean'",
                key="encoder.pooling",
            )
        return model

    def _norm_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        pre = read_preprocessor_config(self.options.location)
        mean, std = pre.get("image_mean"), pre.get("image_std")
        if mean is None or std is None:
            if self.model_type in _CLIP_TYPES:
                mean, std = CLIP_MEAN, CLIP_STD
            else:
                mean, std = IMAGENET_MEAN, IMAGENET_STD
        if isinstance(mean, int | float):
            mean = [mean] * self.num_channels
        if isinstance(std, int | float):
            std = [std] * self.num_channels
        if len(mean) != self.num_channels or len(std) != self.num_channels:
            raise ConfigError(
                f"image_mean/image_std of '{self.options.location}' do not have "
                f"{self.num_channels} channels"
            )
        return tuple(float(m) for m in mean), tuple(float(s) for s in std)

    def pixel_values(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) in [0, 1] → the normalised (B, num_channels, S, S) the model takes."""
        x = batch.to(device=self.device, dtype=self.pixel_mean.dtype)
        if x.ndim == 3:  # (B, H, W) grey
            x = x[:, None]
        if tuple(x.shape[-2:]) != self.image_size:
            x = F.interpolate(
                x, size=self.image_size, mode="bilinear", antialias=True, align_corners=False
            )
        if x.shape[1] != self.num_channels:
            if x.shape[1] == 1:
                x = x.expand(-1, self.num_channels, -1, -1)
            elif self.num_channels == 1:
                x = x.mean(dim=1, keepdim=True)
            else:
                raise ValueError(
                    f"cannot feed {x.shape[1]} channels to a model that takes {self.num_channels}"
                )
        return (x - self.pixel_mean) / self.pixel_std

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        out = self.model(pixel_values=self.pixel_values(batch))
        if self.options.pooling == "pooler":
            return out.pooler_output.flatten(1)
        hidden = out.last_hidden_state
        if hidden.ndim == 4:  # convolutional feature map (B, C, H, W)
            return hidden.mean(dim=(2, 3))
        if self.options.pooling == "cls":
            return hidden[:, 0]
        return hidden.mean(dim=1)
