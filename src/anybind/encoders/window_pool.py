"""A small trainable encoder over a sequence of fixed pretrained vectors (B, windows, D).

Made for the audio modality's `speech_embedding` representation: each window vector goes through
a normalisation → Linear → GELU → Dropout → Linear → GELU (shared across windows), then mean and
max over the windows. Output (B, 2 * hidden). `norm: batch` normalises each input dimension with
statistics of the training data (BatchNorm over all windows of a batch), which `tent` re-estimates
on a target domain (AdaBN) and adapts; `norm: layer` normalises each vector on its own. The
Linears are what `lora` and `ia3` target.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions
from anybind.options import Fraction, Size


class WindowPoolOptions(EncoderOptions):
    type: Literal["window_pool"] = "window_pool"
    #: width of the vector each window is encoded to before pooling
    hidden: Size = 256
    dropout: Fraction = 0.1
    #: dimension of each input vector (96 for the speech embedding)
    input_dim: Size = 96
    norm: Literal["batch", "layer"] = "layer"


class WindowBatchNorm(nn.BatchNorm1d):
    """BatchNorm1d over the last axis of (B, windows, D): every window is one sample."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.reshape(-1, x.shape[-1])).view(x.shape)


@ENCODERS.register("window_pool")
class WindowPool(Encoder):
    Options = WindowPoolOptions
    modalities = ("audio",)
    options: WindowPoolOptions

    @classmethod
    def check(cls, options: WindowPoolOptions, modality_options: ModalityOptions) -> str | None:
        if (
            isinstance(modality_options, AudioOptions)
            and modality_options.representation != "speech_embedding"
        ):
            return "window_pool needs audio.representation = 'speech_embedding'"
        return None

    def __init__(self, options: WindowPoolOptions, modality: Modality):
        super().__init__(options, modality)
        self.per_window = nn.Sequential(
            WindowBatchNorm(options.input_dim)
            if options.norm == "batch"
            else nn.LayerNorm(options.input_dim),
            nn.Linear(options.input_dim, options.hidden),
            nn.GELU(),
            nn.Dropout(options.dropout),
            nn.Linear(options.hidden, options.hidden),
            nn.GELU(),
        )
        self.embed_dim = 2 * options.hidden

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.ndim != 3 or batch.shape[-1] != self.options.input_dim:
            raise ValueError(
                f"window_pool takes (B, windows, {self.options.input_dim}), "
                f"got {tuple(batch.shape)}"
            )
        h = self.per_window(batch)
        return torch.cat([h.mean(dim=1), h.amax(dim=1)], dim=1)
