"""Encoders: one file per family, registered here by the `type` key configs use."""

from __future__ import annotations

from typing import Any

from transformers.utils import logging as hf_logging

from anybind.encoders.base import Encoder, EncoderOptions
from anybind.encoders.builtin_audio import AudioCNN
from anybind.encoders.builtin_image import ImageCNN
from anybind.encoders.builtin_text import ByteTransformer
from anybind.encoders.hf_audio import HFAudio
from anybind.encoders.hf_text import HFText
from anybind.encoders.hf_vision import HFVision
from anybind.encoders.speech_embedding import SpeechEmbedding
from anybind.encoders.window_pool import WindowPool
from anybind.errors import ConfigError
from anybind.modalities.base import Modality
from anybind.registry import Registry

# Loading bars of transformers would interleave with ours; load messages stay as warnings.
hf_logging.disable_progress_bar()

ENCODERS: Registry[type[Encoder]] = Registry("encoder type")
ENCODERS.register("image_cnn")(ImageCNN)
ENCODERS.register("audio_cnn")(AudioCNN)
ENCODERS.register("text_bytes")(ByteTransformer)
ENCODERS.register("hf_text")(HFText)
ENCODERS.register("hf_vision")(HFVision)
ENCODERS.register("hf_audio")(HFAudio)
ENCODERS.register("speech_embedding")(SpeechEmbedding)
ENCODERS.register("window_pool")(WindowPool)


def encoder_options(
    raw: dict[str, Any] | EncoderOptions, *, key: str = "encoder"
) -> EncoderOptions:
    """Validate a raw encoder config against the Options model of its `type`."""
    if isinstance(raw, EncoderOptions):
        return raw
    if "type" not in raw:
        raise ConfigError("an encoder needs a 'type'", key=f"{key}.type")
    cls = ENCODERS.get(raw["type"], key=f"{key}.type")
    return cls.Options(**raw)


def build_encoder(options: EncoderOptions, modality: Modality) -> Encoder:
    cls = ENCODERS.get(options.type)
    if modality.name not in cls.modalities:
        raise ConfigError(f"encoder '{options.type}' takes {cls.modalities}, not '{modality.name}'")
    return cls(options, modality)


__all__ = ["ENCODERS", "Encoder", "EncoderOptions", "build_encoder", "encoder_options"]
