"""A small convolutional image encoder trained from scratch (for small images such as digits).

Conv-BN-GELU blocks, two per stage, 2×2 max-pooling between stages, then global average
pooling. Input (B, C, H, W) in [0, 1]; output (B, width * 2**(stages-1)).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.modalities.base import Modality
from anybind.modalities.image import ImageOptions
from anybind.options import Fraction, Size


class ImageCNNOptions(EncoderOptions):
    type: Literal["image_cnn"] = "image_cnn"
    width: Size = 32
    stages: Size = 3
    dropout: Fraction = 0.1


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.GELU()
    )


@ENCODERS.register("image_cnn")
class ImageCNN(Encoder):
    Options = ImageCNNOptions
    modalities = ("image",)
    options: ImageCNNOptions

    def __init__(self, options: ImageCNNOptions, modality: Modality):
        super().__init__(options, modality)
        assert isinstance(modality.options, ImageOptions)
        c = modality.options.channels
        layers: list[nn.Module] = []
        width = options.width
        for stage in range(options.stages):
            layers += [conv_block(c, width), conv_block(width, width)]
            if stage < options.stages - 1:
                layers.append(nn.MaxPool2d(2))
            c, width = width, width * 2
        self.body = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(options.dropout)
        self.embed_dim = c

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = self.body(batch.to(self.device))  # (B, C', H', W')
        return self.drop(self.pool(x).flatten(1))
