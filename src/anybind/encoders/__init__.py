"""Encoders: one file per family, each class registered with `@ENCODERS.register(type)` under
the `type` key configs use."""

from __future__ import annotations

from transformers.utils import logging as hf_logging

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

# Loading bars of transformers would interleave with ours; load messages stay as warnings.
hf_logging.disable_progress_bar()


__all__ = ["ENCODERS", "Encoder", "EncoderOptions", "build_encoder", "encoder_options"]
