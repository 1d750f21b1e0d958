"""A small transformer encoder for time series, trained from scratch.

Input: a `timeseries` batch (B, C + 1, L) whose last row masks the real steps. Each step's C
values go through a Linear to `width`, plus a learned position embedding; `layers` pre-norm
transformer layers (torch's `TransformerEncoderLayer`) attend over the real steps only (padding
is a key-padding mask), then the mean and max over the real steps. Output (B, 2 · width).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.encoders.series_cnn import masked_mean_max
from anybind.modalities.base import Modality
from anybind.modalities.timeseries import TimeseriesOptions, series_and_mask
from anybind.options import Fraction, Size


class SeriesTransformerOptions(EncoderOptions):
    type: Literal["series_transformer"] = "series_transformer"
    width: Size = 64
    layers: Size = 2
    heads: Size = 4
    dropout: Fraction = 0.1


@ENCODERS.register("series_transformer")
class SeriesTransformer(Encoder):
    Options = SeriesTransformerOptions
    modalities = ("timeseries",)
    options: SeriesTransformerOptions

    @classmethod
    def check(cls, options: SeriesTransformerOptions, modality_options: object) -> str | None:
        if options.width % options.heads:
            return f"series_transformer: width {options.width} is not a multiple of heads"
        return None

    def __init__(self, options: SeriesTransformerOptions, modality: Modality):
        super().__init__(options, modality)
        assert isinstance(modality.options, TimeseriesOptions)
        self.embed = nn.Linear(modality.options.channels, options.width)
        self.position = nn.Parameter(torch.zeros(1, modality.options.length, options.width))
        nn.init.normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(
            options.width,
            options.heads,
            dim_feedforward=4 * options.width,
            dropout=options.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.body = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(options.width)
        self.embed_dim = 2 * options.width

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        values, mask = series_and_mask(batch.to(self.device))
        values = values * mask[:, None, :].to(values.dtype)
        x = self.embed(values.transpose(1, 2)) + self.position[:, : values.shape[2]]
        h = self.norm(self.body(x, src_key_padding_mask=~mask))  # (B, L, width)
        return masked_mean_max(h.transpose(1, 2), mask)
