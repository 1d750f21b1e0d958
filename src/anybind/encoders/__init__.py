"""Encoders: one file per family, each class registered with `@ENCODERS.register(type)` under
the `type` key configs use."""

from __future__ import annotations

from typing import Any

from transformers.utils import logging as hf_logging

# importing an encoder's file registers it
from anybind.encoders import (  # noqa: F401
    builtin_audio,
    builtin_image,
    builtin_text,
    hf_audio,
    hf_text,
    hf_vision,
    speech_embedding,
    window_pool,
)
from anybind.encoders.base import ENCODERS, Encoder, EncoderOptions
from anybind.errors import ConfigError
from anybind.modalities.base import Modality

# Loading bars of transformers would interleave with ours; load messages stay as warnings.
hf_logging.disable_progress_bar()


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
