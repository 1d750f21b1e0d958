"""Transformer encoders over the tokens of any modality: a tower's own, or the space's shared one.

- `token_transformer`: a tower of its own: the modality's token stem (encoders/tokens.py), a
  transformer body with one feed-forward (encoders/backbone.py, `ffn: shared`), the mean over
  the real tokens and a LayerNorm. Output (B, width). The "separate towers" baseline.
- `backbone`: the modality's token stem and final LayerNorm are the tower's own; the body is
  the space's shared `backbone` section (one shared transformer, modality experts, or a routed
  mixture of experts), which every tower with this encoder runs. `width` comes from that
  section (the config fills it in). Output (B, width).

Both take `patch`: pixels per patch side for images and video frames, frames (or windows, or
samples) per token for audio, steps per token for time series; and `max_tokens`: bytes per text.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import model_validator
from torch import nn

from anybind.encoders.backbone import Backbone, BackboneOptions
from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.encoders.tokens import Stem, build_stem, check_stem
from anybind.errors import AnybindError
from anybind.modalities.base import Modality, ModalityOptions
from anybind.options import Fraction, Size

TOKEN_MODALITIES = ("image", "audio", "text", "timeseries", "pointcloud", "video")


class _TokenOptions(EncoderOptions):
    patch: Size = 1
    max_tokens: Size = 64


def masked_mean(h: torch.Tensor, pad: torch.Tensor) -> torch.Tensor:
    keep = (~pad).unsqueeze(-1).to(h.dtype)
    return (h * keep).sum(1) / keep.sum(1).clamp_min(1.0)


class TokenTransformerOptions(_TokenOptions):
    type: Literal["token_transformer"] = "token_transformer"
    width: Size = 64
    layers: Size = 2
    heads: Size = 4
    hidden: Size = 256
    dropout: Fraction = 0.0

    @model_validator(mode="after")
    def _heads_divide_width(self) -> TokenTransformerOptions:
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        return self


class _TokenEncoder(Encoder):
    """What both encoders share: the modality's stem, a body, the mean over real tokens and a
    LayerNorm."""

    modalities = TOKEN_MODALITIES
    options: TokenTransformerOptions | BackboneEncoderOptions

    @classmethod
    def check(cls, options: _TokenOptions, modality_options: ModalityOptions) -> str | None:
        return check_stem(modality_options, options.patch)

    def __init__(self, options: _TokenOptions, modality: Modality, width: int):
        super().__init__(options, modality)
        self.stem: Stem = build_stem(modality, width, options.patch, options.max_tokens)
        self.norm = nn.LayerNorm(width)
        self.embed_dim = width

    def body_of(self) -> tuple[Backbone, str]:
        raise NotImplementedError

    def forward(self, batch: Any) -> torch.Tensor:
        body, name = self.body_of()
        tokens, pad = self.stem(batch)
        return self.norm(masked_mean(body(tokens, pad, name), pad))


@ENCODERS.register("token_transformer")
class TokenTransformer(_TokenEncoder):
    Options = TokenTransformerOptions
    options: TokenTransformerOptions

    def __init__(self, options: TokenTransformerOptions, modality: Modality):
        super().__init__(options, modality, options.width)
        o = options
        body = BackboneOptions(
            ffn="shared", width=o.width, layers=o.layers, heads=o.heads, hidden=o.hidden,
            dropout=o.dropout,
        )  # fmt: skip
        self.body = Backbone(body, [modality.name])

    def body_of(self) -> tuple[Backbone, str]:
        return self.body, self.modality.name


class BackboneEncoderOptions(_TokenOptions):
    type: Literal["backbone"] = "backbone"
    #: the shared backbone's width; filled in from the config's `backbone` section
    width: Size | None = None


@ENCODERS.register("backbone")
class BackboneEncoder(_TokenEncoder):
    Options = BackboneEncoderOptions
    options: BackboneEncoderOptions

    def __init__(self, options: BackboneEncoderOptions, modality: Modality):
        if options.width is None:
            raise AnybindError("a `backbone` encoder needs the config's `backbone` section")
        super().__init__(options, modality, options.width)
        # the shared body belongs to the space (one copy in its state dict), not to the tower
        self._shared: list[tuple[Backbone, str]] = []

    def attach(self, backbone: Backbone, name: str) -> None:
        """Run the space's `backbone` as this tower's body, as modality `name` (its expert)."""
        self._shared = [(backbone, name)]

    def body_of(self) -> tuple[Backbone, str]:
        if not self._shared:
            raise AnybindError("this `backbone` encoder is not attached to a space's backbone")
        return self._shared[0]
