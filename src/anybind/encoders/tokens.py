"""Token stems: a batch of any modality → a sequence of tokens for a transformer.

Each stem turns one modality's collated batch into tokens (B, L, width) and a padding mask
(B, L) (True where a position holds no real token), with learned position embeddings where order
means something:

- `image` (B, C, H, W): non-overlapping `patch`×`patch` patches through one linear map
  (a strided convolution, as ViT), plus a learned embedding per patch position;
- `audio`: log-mel (B, n_mels, frames), normalised per mel bin over time (CMVN) as `audio_cnn`
  does, `patch` frames per token; `speech_embedding` (B, windows, 96), LayerNorm-ed, `patch`
  windows per token; `waveform` (B, samples), `patch` samples per token;
- `text` (list of strings): UTF-8 bytes (+1, 0 is padding) up to `max_tokens`, as `text_bytes`;
- `timeseries` (B, C + 1, L): one token per step, `patch` steps per token; padded steps are
  masked out;
- `pointcloud` (B, points, 3 + F): one token per point, no position embedding (a set);
- `video` (B, frames · S, C, H, W): every frame's middle slot in patches (as `image`) with a
  spatial and a temporal position embedding.

A row always keeps its first position unmasked (an empty string or an empty series would
otherwise give attention nothing to attend to). The stems are the only modality-specific part
of the `token_transformer` and `backbone` encoders (encoders/token_transformer.py).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from anybind.modalities.audio import AudioOptions
from anybind.modalities.base import Modality, ModalityOptions
from anybind.modalities.image import ImageOptions
from anybind.modalities.pointcloud import PointCloudOptions
from anybind.modalities.speech_model import EMBED_DIM
from anybind.modalities.timeseries import TimeseriesOptions, series_and_mask
from anybind.modalities.video import VideoOptions
from anybind.registry import Registry


class Stem(nn.Module):
    """Base class: `forward(batch) → (tokens (B, L, width), pad (B, L) bool)`."""

    #: the options of the modality this stem tokenises
    options_type: ClassVar[type[ModalityOptions]] = ModalityOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__()
        self.modality = modality
        self.width = width
        self.patch = patch
        self.max_tokens = max_tokens

    @classmethod
    def check(cls, options: ModalityOptions, patch: int) -> str | None:
        return None

    def forward(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


STEMS: Registry[type[Stem]] = Registry("token stem")


def positions(count: int, width: int) -> nn.Parameter:
    table = nn.Parameter(torch.zeros(1, count, width))
    nn.init.trunc_normal_(table, std=0.02)
    return table


def no_padding(tokens: torch.Tensor) -> torch.Tensor:
    return torch.zeros(tokens.shape[:2], dtype=torch.bool, device=tokens.device)


def keep_first(pad: torch.Tensor) -> torch.Tensor:
    pad = pad.clone()
    pad[:, 0] = False
    return pad


def patch_fits(size: tuple[int, int], patch: int) -> str | None:
    if size[0] % patch or size[1] % patch:
        return f"patch {patch} does not divide the image size {list(size)}"
    return None


@STEMS.register("image")
class ImageStem(Stem):
    options_type = ImageOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        o = modality.options
        assert isinstance(o, ImageOptions)
        self.embed = nn.Conv2d(o.channels, width, patch, stride=patch)
        self.position = positions((o.size[0] // patch) * (o.size[1] // patch), width)

    @classmethod
    def check(cls, options: ModalityOptions, patch: int) -> str | None:
        assert isinstance(options, ImageOptions)
        return patch_fits(options.size, patch)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(batch.to(self.device)).flatten(2).transpose(1, 2)  # (B, P, width)
        x = x + self.position
        return x, no_padding(x)


@STEMS.register("video")
class VideoStem(Stem):
    options_type = VideoOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        o = modality.options
        assert isinstance(o, VideoOptions)
        self.frames, self.slots = o.frames, o.slots
        self.embed = nn.Conv2d(o.channels, width, patch, stride=patch)
        self.space_position = positions((o.size[0] // patch) * (o.size[1] // patch), width)
        self.time_position = positions(o.frames, width)

    @classmethod
    def check(cls, options: ModalityOptions, patch: int) -> str | None:
        assert isinstance(options, VideoOptions)
        return patch_fits(options.size, patch)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b = batch.shape[0]
        x = batch.to(self.device).unflatten(1, (self.frames, self.slots))[:, :, self.slots // 2]
        x = self.embed(x.flatten(0, 1)).flatten(2).transpose(1, 2) + self.space_position
        x = x.unflatten(0, (b, self.frames)) + self.time_position[:, :, None]  # (B, T, P, w)
        x = x.flatten(1, 2)
        return x, no_padding(x)


@STEMS.register("audio")
class AudioStem(Stem):
    options_type = AudioOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        o = modality.options
        assert isinstance(o, AudioOptions)
        self.representation = o.representation
        shape = modality.placeholder().shape  # what one clip collates to
        if o.representation == "speech_embedding":  # (windows, 96)
            per_step, steps = EMBED_DIM, shape[0]
            self.norm: nn.Module = nn.LayerNorm(EMBED_DIM)
        elif o.representation == "log_mel":  # (n_mels, frames)
            per_step, steps = shape[0], shape[1]
            self.norm = nn.Identity()
        else:  # (samples,)
            per_step, steps = 1, shape[0]
            self.norm = nn.Identity()
        self.steps = steps
        self.embed = nn.Linear(per_step * patch, width)
        self.position = positions(-(-steps // patch), width)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = batch.to(self.device).float()
        if self.representation == "log_mel":  # (B, M, T): CMVN, then frames as steps
            x = (x - x.mean(dim=2, keepdim=True)) / (x.std(dim=2, keepdim=True) + 1e-4)
            x = x.transpose(1, 2)
        elif self.representation == "waveform":
            x = x[:, :, None]
        x = self.norm(x)  # (B, steps, per_step)
        steps = x.shape[1]
        if steps % self.patch:
            x = F.pad(x, (0, 0, 0, self.patch - steps % self.patch))
        x = self.embed(x.reshape(x.shape[0], -1, self.patch * x.shape[2]))
        x = x + self.position[:, : x.shape[1]]
        return x, no_padding(x)


@STEMS.register("text")
class TextStem(Stem):
    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        self.embed = nn.Embedding(257, width, padding_idx=0)
        self.position = positions(max_tokens, width)

    def forward(self, batch: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids = torch.zeros(len(batch), self.max_tokens, dtype=torch.long)
        for i, text in enumerate(batch):
            data = list(text.encode("utf-8"))[: self.max_tokens]
            ids[i, : len(data)] = torch.tensor(data, dtype=torch.long) + 1
        ids = ids.to(self.device)
        return self.embed(ids) + self.position, keep_first(ids == 0)


@STEMS.register("timeseries")
class SeriesStem(Stem):
    options_type = TimeseriesOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        o = modality.options
        assert isinstance(o, TimeseriesOptions)
        self.embed = nn.Linear(o.channels * patch, width)
        self.position = positions(-(-o.length // patch), width)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values, mask = series_and_mask(batch.to(self.device))
        values = values * mask[:, None, :].to(values.dtype)  # padding holds no information
        length = values.shape[2]
        if length % self.patch:
            values = F.pad(values, (0, self.patch - length % self.patch))
            mask = F.pad(mask, (0, self.patch - length % self.patch))
        b, c = values.shape[:2]
        steps = values.transpose(1, 2).reshape(b, -1, self.patch * c)
        x = self.embed(steps) + self.position[:, : steps.shape[1]]
        real = mask.reshape(b, -1, self.patch).any(dim=2)
        return x, keep_first(~real)


@STEMS.register("pointcloud")
class PointStem(Stem):
    options_type = PointCloudOptions

    def __init__(self, modality: Modality, width: int, patch: int, max_tokens: int):
        super().__init__(modality, width, patch, max_tokens)
        o = modality.options
        assert isinstance(o, PointCloudOptions)
        self.embed = nn.Linear(3 + o.features, width)

    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.embed(batch.to(self.device).float())
        return x, no_padding(x)


def check_stem(options: ModalityOptions, patch: int) -> str | None:
    """Why no stem can tokenise this modality with `patch`, or None."""
    for _, cls in STEMS.items():
        if cls.options_type is not ModalityOptions and isinstance(options, cls.options_type):
            return cls.check(options, patch)
    return None


def build_stem(modality: Modality, width: int, patch: int, max_tokens: int) -> Stem:
    return STEMS.get(modality.name)(modality, width, patch, max_tokens)
