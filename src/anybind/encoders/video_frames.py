"""`video_frames`: any registered image encoder applied to every frame, then temporal pooling.

Input (B, frames · S, C, H, W) from the `video` modality; only the middle slot (S//2) of each
segment's S frames is read (see modalities/video.py), giving T = `frames` frames per clip. They
run through the per-frame encoder `frame` as one (B·T, C, H, W) batch, the image encoder that
the nested config `frame: {type: image_cnn, ...}` names, built on an image modality with the
video's `size` and `channels` (so a trained image tower's encoder weights load into `frame.*`).
Its (B, T, D) features are pooled over time:

- `temporal: mean`: the mean over the T frames, (B, D); the same, bit for bit, for any order of
  the frames (it is taken over the values sorted along time);
- `temporal: attention`: learned temporal position embeddings are added, `layers` pre-norm
  transformer encoder layers (`heads` heads, feed-forward 4·D) attend over the frames, and the
  `readout` is a learned CLS token's output or the mean of the frame outputs, (B, D).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from pydantic import Field, SerializeAsAny, field_validator
from torch import nn

from anybind.encoders.base import (
    ENCODERS,
    Encoder,
    EncoderOptions,
    build_encoder,
    encoder_options,
)
from anybind.encoders.builtin_image import ImageCNNOptions
from anybind.errors import ConfigError
from anybind.modalities.base import Modality, ModalityOptions
from anybind.modalities.image import ImageModality, ImageOptions
from anybind.modalities.video import VideoOptions
from anybind.options import Fraction, Size


class VideoFramesOptions(EncoderOptions):
    type: Literal["video_frames"] = "video_frames"
    #: the per-frame image encoder: a nested encoder config of any type that encodes images
    frame: SerializeAsAny[EncoderOptions] = Field(default_factory=ImageCNNOptions)
    temporal: Literal["mean", "attention"] = "mean"
    #: `attention` only: transformer layers over the frames, heads (must divide the frame
    #: encoder's width), dropout, and what the output is read from
    layers: Size = 1
    heads: Size = 4
    dropout: Fraction = 0.0
    readout: Literal["cls", "mean"] = "cls"

    @field_validator("frame", mode="before")
    @classmethod
    def _frame_options(cls, raw: Any) -> EncoderOptions:
        if not isinstance(raw, dict | EncoderOptions):
            raise ValueError("an encoder config (a mapping with a 'type') is needed")
        try:
            return encoder_options(raw, key="frame")
        except ConfigError as exc:  # no or an unknown type; a bad option re-roots under `frame`
            raise ValueError(exc.detail) from None


def frame_modality(options: VideoOptions) -> ImageModality:
    """The image modality whose batches the per-frame encoder takes: the video's size/channels."""
    return ImageModality(ImageOptions(size=options.size, channels=options.channels))


@ENCODERS.register("video_frames")
class VideoFrames(Encoder):
    Options = VideoFramesOptions
    modalities = ("video",)
    options: VideoFramesOptions

    @classmethod
    def check(cls, options: VideoFramesOptions, modality_options: ModalityOptions) -> str | None:
        if not isinstance(modality_options, VideoOptions):
            return None
        frame = ENCODERS.get(options.frame.type)
        if "image" not in frame.modalities:
            return (
                f"video_frames.frame: '{options.frame.type}' encodes "
                f"{', '.join(frame.modalities)}, not image"
            )
        image_options = frame_modality(modality_options).options
        reason = frame.check(options.frame, image_options)
        return f"video_frames.frame: {reason}" if reason else None

    def __init__(self, options: VideoFramesOptions, modality: Modality):
        super().__init__(options, modality)
        assert isinstance(modality.options, VideoOptions)
        video = modality.options
        self.frames, self.slots = video.frames, video.slots
        self.frame = build_encoder(options.frame, frame_modality(video))
        d = self.frame.embed_dim
        self.embed_dim = d
        if options.temporal == "attention":
            if d % options.heads:
                raise ConfigError(
                    f"video_frames: heads = {options.heads} must divide the frame encoder's "
                    f"width {d}"
                )
            self.position = nn.Parameter(torch.zeros(1, self.frames, d))
            nn.init.trunc_normal_(self.position, std=0.02)
            if options.readout == "cls":
                self.cls = nn.Parameter(torch.zeros(1, 1, d))
                nn.init.trunc_normal_(self.cls, std=0.02)
            layer = nn.TransformerEncoderLayer(
                d,
                options.heads,
                4 * d,
                options.dropout,
                activation="gelu",
                batch_first=True,
                norm_first=True,
            )
            self.temporal = nn.TransformerEncoder(layer, options.layers, enable_nested_tensor=False)
            self.norm = nn.LayerNorm(d)

    def init_target(self) -> nn.Module:
        """`init_from` an image tower fills the per-frame encoder (`frame.*`)."""
        return self.frame

    def frame_features(self, batch: torch.Tensor) -> torch.Tensor:
        """(B, T·S, C, H, W) → (B, T, D): the frame encoder on each segment's middle slot."""
        if batch.ndim != 5 or batch.shape[1] != self.frames * self.slots:
            raise ValueError(
                f"video_frames takes (B, {self.frames * self.slots}, C, H, W), "
                f"got {tuple(batch.shape)}"
            )
        b = batch.shape[0]
        x = batch.to(self.device).unflatten(1, (self.frames, self.slots))[:, :, self.slots // 2]
        return self.frame(x.flatten(0, 1)).unflatten(0, (b, self.frames))

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # → (B, D_enc)
        h = self.frame_features(batch)
        if self.options.temporal == "mean":
            return h.sort(dim=1).values.mean(dim=1)
        h = h + self.position
        if self.options.readout == "cls":
            h = torch.cat([self.cls.expand(h.shape[0], -1, -1), h], dim=1)
        h = self.norm(self.temporal(h))
        return h[:, 0] if self.options.readout == "cls" else h.mean(dim=1)
