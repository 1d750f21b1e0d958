"""Encoders: one file per family, each class registered with `@ENCODERS.register(type)` under
the `type` key configs use."""

from __future__ import annotations

# importing an encoder's file registers it
from anybind.encoders import (  # noqa: F401
    builtin_audio,
    builtin_image,
    builtin_text,
    hf_audio,
    hf_clip,
    hf_text,
    hf_vision,
    pointnet,
    series_cnn,
    series_transformer,
    speech_embedding,
    token_transformer,
    video_frames,
    window_pool,
)
from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderOptions,
    build_encoder,
    encoder_options,
)

__all__ = ["ENCODERS", "Encoder", "EncoderOptions", "build_encoder", "encoder_options"]
