"""PointNet: a shared per-point MLP and a symmetric pooling over the points, trained from scratch.

Input (B, points, 3 + features) from the `pointcloud` modality. Every point goes through the
same Linear-BatchNorm-activation blocks of `widths` (a 1×1 convolution over the points), then
the points are pooled: `max` (output (B, widths[-1])) or `max+mean` (max and mean concatenated,
(B, 2 * widths[-1])). The result does not depend on the order of the points, exactly (bit for
bit, in eval mode): the mean is taken over the values sorted along the points, so that even the
floating-point summation order is independent of the input order.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.modalities.base import Modality
from anybind.modalities.pointcloud import PointCloudOptions
from anybind.options import Size


class PointNetOptions(EncoderOptions):
    type: Literal["pointnet"] = "pointnet"
    #: output width of each shared per-point block
    widths: list[Size] = Field(default_factory=lambda: [64, 128, 256], min_length=1)
    pool: Literal["max", "max+mean"] = "max"
    activation: Literal["relu", "gelu"] = "relu"


@ENCODERS.register("pointnet")
class PointNet(Encoder):
    Options = PointNetOptions
    modalities = ("pointcloud",)
    options: PointNetOptions

    def __init__(self, options: PointNetOptions, modality: Modality):
        super().__init__(options, modality)
        assert isinstance(modality.options, PointCloudOptions)
        c = 3 + modality.options.features
        blocks: list[nn.Module] = []
        for width in options.widths:
            act = nn.ReLU() if options.activation == "relu" else nn.GELU()
            blocks += [nn.Conv1d(c, width, 1, bias=False), nn.BatchNorm1d(width), act]
            c = width
        self.per_point = nn.Sequential(*blocks)
        self.in_channels = 3 + modality.options.features
        self.embed_dim = c * (2 if options.pool == "max+mean" else 1)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # (B, P, 3 + F) → (B, D_enc)
        if batch.ndim != 3 or batch.shape[-1] != self.in_channels:
            raise ValueError(
                f"pointnet takes (B, points, {self.in_channels}), got {tuple(batch.shape)}"
            )
        h = self.per_point(batch.to(self.device).transpose(1, 2))  # (B, D, P)
        pooled = h.amax(dim=2)
        if self.options.pool == "max+mean":
            pooled = torch.cat([pooled, h.sort(dim=2).values.mean(dim=2)], dim=1)
        return pooled
