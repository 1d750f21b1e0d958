"""A small convolutional encoder over log-mel spectrograms, trained from scratch.

Each utterance is normalised per mel bin (mean and variance over time, i.e. CMVN), which removes
gain and channel colouring; then a stride-2 Conv-BN-GELU stem, Conv-BN-GELU stages each followed
by 2×2 max-pooling, and mean+max pooling over time.
Input (B, n_mels, frames); output (B, 2 * width * 2**(stages-1)) (mean and max over time).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.encoders.builtin_image import conv_block
from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions
from anybind.options import Fraction, Size


class AudioCNNOptions(EncoderOptions):
    type: Literal["audio_cnn"] = "audio_cnn"
    width: Size = 24
    #: a stride-2 stem, then (stages - 1) stages that double the width and halve both axes
    stages: Size = 4
    #: convolutions per stage after the stem
    blocks: Size = 1
    dropout: Fraction = 0.1


@ENCODERS.register("audio_cnn")
class AudioCNN(Encoder):
    Options = AudioCNNOptions
    modalities = ("audio",)
    options: AudioCNNOptions

    @classmethod
    def check(cls, options: AudioCNNOptions, modality_options: ModalityOptions) -> str | None:
        if (
            isinstance(modality_options, AudioOptions)
            and modality_options.representation != "log_mel"
        ):
            return "audio_cnn needs audio.representation = 'log_mel'"
        return None

    def __init__(self, options: AudioCNNOptions, modality: Modality):
        super().__init__(options, modality)
        # a stride-2 stem: activations at full resolution dominate CPU time (memory-bound
        # BatchNorm/GELU/pooling), and 40 mel bins × 16 ms frames are finer than a word needs
        layers: list[nn.Module] = [
            nn.Conv2d(1, options.width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(options.width),
            nn.GELU(),
        ]
        c = options.width
        for _ in range(options.stages - 1):
            layers.append(conv_block(c, 2 * c))
            layers += [conv_block(2 * c, 2 * c) for _ in range(options.blocks - 1)]
            layers.append(nn.MaxPool2d(2))
            c *= 2
        self.body = nn.Sequential(*layers)
        self.drop = nn.Dropout(options.dropout)
        self.embed_dim = 2 * c

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.to(self.device)  # (B, M, T)
        x = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, keepdim=True) + 1e-4)
        x = self.body(x[:, None])  # (B, C, M', T')
        x = x.mean(dim=2)  # (B, C, T')
        return self.drop(torch.cat([x.mean(dim=2), x.amax(dim=2)], dim=1))
