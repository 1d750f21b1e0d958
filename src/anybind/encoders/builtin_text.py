"""A tiny byte-level transformer text encoder trained from scratch (no tokenizer files needed).

Bytes of the UTF-8 string (+1 so that 0 is padding), learned positions, a few pre-LN transformer
layers, mean pooling over non-padding positions. Output (B, width).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import model_validator
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.modalities.base import Modality
from anybind.options import Size


class ByteTransformerOptions(EncoderOptions):
    type: Literal["text_bytes"] = "text_bytes"
    width: Size = 64
    layers: Size = 2
    heads: Size = 4
    max_bytes: Size = 64

    @model_validator(mode="after")
    def _heads_divide_width(self) -> ByteTransformerOptions:
        if self.width % self.heads:
            raise ValueError(f"heads ({self.heads}) must divide width ({self.width})")
        return self


@ENCODERS.register("text_bytes")
class ByteTransformer(Encoder):
    Options = ByteTransformerOptions
    modalities = ("text",)
    options: ByteTransformerOptions

    def __init__(self, options: ByteTransformerOptions, modality: Modality):
        super().__init__(options, modality)
        self.tokens = nn.Embedding(257, options.width, padding_idx=0)
        self.positions = nn.Parameter(torch.zeros(options.max_bytes, options.width))
        nn.init.normal_(self.positions, std=0.02)
        layer = nn.TransformerEncoderLayer(
            options.width,
            options.heads,
            4 * options.width,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.body = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(options.width)
        self.embed_dim = options.width

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        n = self.options.max_bytes
        ids = torch.zeros(len(texts), n, dtype=torch.long)
        for i, text in enumerate(texts):
            data = list(text.encode("utf-8"))[:n]
            ids[i, : len(data)] = torch.tensor(data, dtype=torch.long) + 1
        return ids

    def forward(self, batch: list[str]) -> torch.Tensor:
        ids = self.tokenize(batch).to(self.device)  # (B, L)
        pad = ids == 0
        x = self.tokens(ids) + self.positions[: ids.shape[1]]
        x = self.norm(self.body(x, src_key_padding_mask=pad))  # (B, L, W)
        keep = (~pad).unsqueeze(-1).to(x.dtype)
        return (x * keep).sum(1) / keep.sum(1).clamp_min(1.0)
