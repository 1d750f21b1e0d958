"""A small 1-D convolutional encoder for time series, trained from scratch.

Input: a `timeseries` batch (B, C + 1, L) whose last row masks the real steps. Conv1d-BN-GELU
blocks (kernel `kernel`, same padding), two per stage, the width doubling each stage, then the
mean and the max over the real steps only (padding never enters the pooled vector, so a series'
features do not depend on how far it was padded). The mask row is also an input channel, so the
convolutions see where a series ends; padded steps are zeroed before the first convolution.
Output (B, 2 · width · 2**(stages-1)).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.modalities.base import Modality
from anybind.modalities.timeseries import TimeseriesOptions, series_and_mask
from anybind.options import Fraction, Size


class SeriesCNNOptions(EncoderOptions):
    type: Literal["series_cnn"] = "series_cnn"
    width: Size = 64
    stages: Size = 2
    kernel: Size = 3
    dropout: Fraction = 0.1


def masked_mean_max(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, D, L) features and a bool (B, L) mask → (B, 2D): mean and max over the real steps."""
    m = mask[:, None, :].to(h.dtype)
    count = m.sum(dim=2).clamp_min(1.0)
    mean = (h * m).sum(dim=2) / count
    top = h.masked_fill(~mask[:, None, :], float("-inf")).amax(dim=2)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # an all-padding row
    return torch.cat([mean, top], dim=1)


@ENCODERS.register("series_cnn")
class SeriesCNN(Encoder):
    Options = SeriesCNNOptions
    modalities = ("timeseries",)
    options: SeriesCNNOptions

    def __init__(self, options: SeriesCNNOptions, modality: Modality):
        super().__init__(options, modality)
        assert isinstance(modality.options, TimeseriesOptions)
        c, width = modality.options.channels + 1, options.width
        layers: list[nn.Module] = []
        for _ in range(options.stages):
            for c_in in (c, width):
                layers += [
                    nn.Conv1d(c_in, width, options.kernel, padding="same", bias=False),
                    nn.BatchNorm1d(width),
                    nn.GELU(),
                ]
            c, width = width, width * 2
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(options.dropout)
        self.embed_dim = 2 * c

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(self.device)
        _, mask = series_and_mask(batch)
        keep = mask[:, None, :].to(batch.dtype)
        h = self.body(batch * keep) * keep  # whatever the padding holds stays out
        return self.drop(masked_mean_max(h, mask))
