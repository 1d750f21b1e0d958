"""A small convolutional encoder over log-mel spectrograms, trained from scratch.

Each utterance is normalised per mel bin (mean and variance over time, i.e. CMVN), which removes
gain and channel colouring, then Conv-BN-GELU stages with pooling, then mean+max pooling over time.
Input (B, n_mels, frames); output (B, 2 * width * 2**(stages-1)).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import Encoder, EncoderOptions
from anybind.encoders.builtin_image import conv_block
from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions


class AudioCNNOptions(EncoderOptions):
    type: Literal["audio_cnn"] = "audio_cnn"
    width: int = 32
    stages: int = 3
    dropout: float = 0.1


class AudioCNN(Encoder):
    Options = AudioCNNOptions
    modalities = ("audio",)
    options: AudioCNNOptions

    @classmethod
    def check(cls, options: AudioCNNOptions, modality_options: ModalityOptions) -> str | None:
        if isinstance(modality_options, AudioOptions) and \
                modality_options.representation != "log_mel":
            return "audio_cnn needs audio.representation = 'log_mel'"
        return None

    def __init__(self, options: AudioCNNOptions, modality: Modality):
        super().__init__(options, modality)
        layers: list[nn.Module] = []
        c, width = 1, options.width
        for _ in range(options.stages):
            layers += [conv_block(c, width), conv_block(width, width), nn.MaxPool2d(2)]
            c, width = width, width * 2
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(options.dropout)
        self.embed_dim = 2 * c

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device)  # (B, M, T)
        x = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, keepdim=True) + 1e-4)
        x = self.body(x[:, None])  # (B, C, M', T')
        x = x.mean(dim=2)  # (B, C, T')
        return self.drop(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1))
