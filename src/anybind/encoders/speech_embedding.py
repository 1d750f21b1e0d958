"""The pretrained speech embedding as an audio encoder, to fine-tune inside a tower: (B, 16 kHz
samples) → (B, 192), the mean and the max of its window vectors. The network itself, its weights
and its front end are described in `anybind.modalities.speech_model` (the audio modality's frozen
`speech_embedding` representation runs the same network)."""

from __future__ import annotations

from typing import Literal

import torch

from anybind.encoders.base import ENCODERS, Encoder, PretrainedOptions
from anybind.errors import ConfigError
from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions
from anybind.modalities.speech_model import (
    EMBED_DIM,
    MEL_FILE,
    MIN_SAMPLES,
    SAMPLE_RATE,
    SpeechEmbeddingModel,
)
from anybind.model_paths import resolve_model_path
from anybind.options import Size


class SpeechEmbeddingOptions(PretrainedOptions):
    type: Literal["speech_embedding"] = "speech_embedding"
    #: folder holding melspectrogram.onnx and embedding_model.onnx
    path: str = "package:openwakeword/resources/models"
    #: frames (10 ms) between consecutive 76-frame windows
    window_step: Size = 8
    #: each clip is scaled to this peak (fraction of full scale); 0 keeps the level as it is
    peak: float = 0.5
    #: standard deviation of the fixed dither, in 16-bit units
    dither: float = 5.0


@ENCODERS.register("speech_embedding")
class SpeechEmbedding(Encoder):
    """The pretrained network inside a tower (to fine-tune it): mean and max over windows."""

    Options = SpeechEmbeddingOptions
    modalities = ("audio",)
    pretrained = True
    options: SpeechEmbeddingOptions

    @classmethod
    def check(
        cls, options: SpeechEmbeddingOptions, modality_options: ModalityOptions
    ) -> str | None:
        if not isinstance(modality_options, AudioOptions):
            return None
        if modality_options.representation != "waveform":
            return "speech_embedding needs audio.representation = 'waveform'"
        if modality_options.sample_rate != SAMPLE_RATE:
            return f"speech_embedding needs audio.sample_rate = {SAMPLE_RATE}"
        if modality_options.max_seconds * SAMPLE_RATE < MIN_SAMPLES:
            return "speech_embedding needs audio.max_seconds ≥ 0.78 (one 76-frame window)"
        return None

    def __init__(self, options: SpeechEmbeddingOptions, modality: Modality):
        super().__init__(options, modality)
        max_seconds = float(getattr(modality.options, "max_seconds", 1.0))
        try:
            self.model = SpeechEmbeddingModel(
                resolve_model_path(options.path, required=MEL_FILE),
                window_step=options.window_step,
                peak=options.peak,
                dither=options.dither,
                max_samples=int(round(max_seconds * SAMPLE_RATE)),
            )
        except ConfigError as exc:
            raise ConfigError(exc.detail, key=f"encoder.{exc.key}") from None
        self.embed_dim = 2 * EMBED_DIM

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        vectors = self.model(batch)
        return torch.cat([vectors.mean(dim=1), vectors.amax(dim=1)], dim=1)
