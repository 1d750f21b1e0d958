"""Video modality: a clip → float32 (frames · S, C, H, W) in [0, 1], S frames per segment.

Input: a video file decoded with PyAV (FFmpeg: `.mp4 .avi .mov .mkv .webm .m4v .mpg .mpeg
.ogv`), an animated `.gif`/`.webp` (Pillow, every frame composited), a `.npy` file, or an
in-memory array shaped (T, H, W), (T, H, W, C) or (T, C, H, W) with C in {1, 3, 4}
(channels-last when the last axis is 1, 3 or 4 and the second is not). uint8 is divided by 255;
other numeric arrays must lie in [0, 1]. Frames are converted to `channels` (grey = the mean of
R, G, B, for every source; alpha dropped) and resized to `size` (bilinear, antialiased).

Sampling. The clip's n frames are cut into `frames` equal segments; segment i spans frame times
[i·n/T, (i+1)·n/T). `load` returns S = `segment_samples` frames per segment (S = 1 for
`sampling: uniform`), at the times (i + 1/2 + (j - S//2)/S)·n/T for j = 0..S-1, frame index =
floor(time) (so a clip shorter than T·S frames repeats frames). Slot S//2 of every segment is
its centre frame, which is what `uniform` sampling (TSN's test-time sampling) takes. `load` is a
pure function of its input (it may be cached); `augment` does the random part of
`random_segment` (TSN training): it copies a random one of each segment's S frames into the
segment's middle slot. Encoders read only the middle slot of each segment, so evaluation (no
augment) is uniform sampling, and training sees one random frame per segment. Batches are plain
tensors (B, frames · S, C, H, W).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any, BinaryIO, Literal

import av
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageSequence, UnidentifiedImageError
from pydantic import model_validator

from anybind.errors import DataError
from anybind.modalities.base import (
    MODALITIES,
    Modality,
    ModalityOptions,
    check_finite,
    numeric_array,
    read_input,
)
from anybind.modalities.image import MAX_PIXELS, _require_small_npy
from anybind.options import Size

#: files decoded with Pillow (frame by frame, composited); the other video suffixes go to PyAV
PILLOW_SUFFIXES = (".gif", ".webp")
PYAV_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".ogv")


class VideoOptions(ModalityOptions):
    #: T: the clip is cut into this many equal segments, one frame each reaches the encoder
    frames: Size = 8
    size: tuple[Size, Size] = (32, 32)
    channels: Literal[1, 3] = 3
    #: `uniform`: the centre frame of each segment; `random_segment`: a random frame of each
    #: segment in training (TSN), the centre one in evaluation
    sampling: Literal["uniform", "random_segment"] = "uniform"
    #: S: candidate frames loaded per segment for `random_segment` (default 4); must be 1 (or
    #: unset) for `uniform`
    segment_samples: Size | None = None

    @model_validator(mode="after")
    def _samples_need_random_segments(self) -> VideoOptions:
        if self.sampling == "uniform" and (self.segment_samples or 1) > 1:
            raise ValueError(
                "segment_samples: uniform sampling loads one frame per segment; "
                "set sampling: random_segment to load more"
            )
        return self

    @property
    def slots(self) -> int:
        """S, the frames `load` returns per segment."""
        if self.sampling == "uniform":
            return 1
        return self.segment_samples if self.segment_samples is not None else 4


@MODALITIES.register("video")
class VideoModality(Modality):
    Options = VideoOptions
    contract = (
        "float32 (frames * S, C, H, W) in [0, 1]; S = segment_samples frames per segment "
        "(1 for uniform sampling), slot S//2 of each segment its centre frame; C and (H, W) from "
        "`channels` and `size`"
    )
    file_suffixes = (*PYAV_SUFFIXES, *PILLOW_SUFFIXES, ".npy")
    options: VideoOptions

    def load(self, raw: Any, *, source: str | None = None) -> torch.Tensor:
        frames, source = read_input(self, raw, source, "video", self._decode)
        if not self.is_file(raw):  # an inline array of every frame: take the sampled ones
            frames = self._select(frames, source)
        return self._to_tensor(frames, source)

    def sample_indices(self, n: int) -> np.ndarray:
        """The frame indices `load` takes from a clip of n frames: (frames * S,), segment-major."""
        t, s = self.options.frames, self.options.slots
        i = np.arange(t, dtype=np.int64)[:, None]
        j = np.arange(s, dtype=np.int64)[None, :]
        # floor(n · (i + 1/2 + (j - S//2)/S) / T), in integers: no rounding at segment borders
        index = (n * (2 * i * s + s + 2 * (j - s // 2))) // (2 * s * t)
        return np.minimum(index, n - 1).reshape(-1)

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        """`random_segment`: a random one of each segment's S frames, per clip, goes into the
        segment's middle slot (the one encoders read). `uniform`: unchanged."""
        s = self.options.slots
        if s == 1:
            return batch
        b, t = batch.shape[0], self.options.frames
        clips = batch.reshape(b, t, s, *batch.shape[2:])
        pick = torch.randint(0, s, (b, t)).to(batch.device)  # drawn on the CPU: same on any device
        rows = torch.arange(b, device=batch.device)[:, None]
        chosen = clips[rows, torch.arange(t, device=batch.device)[None], pick]  # (B, T, C, H, W)
        out = clips.clone()
        out[:, :, s // 2] = chosen
        return out.reshape(batch.shape)

    def placeholder(self) -> torch.Tensor:
        h, w = self.options.size
        return torch.zeros(self.options.frames * self.options.slots, self.options.channels, h, w)

    # -- reading ---------------------------------------------------------------------------

    def _decode(self, opener: Callable[[], BinaryIO], suffix: str, source: str) -> np.ndarray:
        if suffix == ".npy":
            try:
                with opener() as f:
                    _require_small_npy(f, source)
                    array = np.load(f, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(f"cannot read video array: {exc}", path=source) from None
            return self._select(numeric_array(array, source, "a video"), source)
        if suffix in PILLOW_SUFFIXES:
            return self._decode_pillow(opener, source)
        return self._decode_pyav(opener, source)

    def _decode_pillow(self, opener: Callable[[], BinaryIO], source: str) -> np.ndarray:
        """Animated GIF/WebP → the selected frames (K, 3, H, W) uint8, composited by Pillow."""
        try:
            with opener() as f, warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(f) as img:
                    _check_pixels(*img.size, source)
                    declared = getattr(img, "n_frames", 1)
                    index = self.sample_indices(declared)
                    wanted = set(index.tolist())
                    kept = {
                        k: np.asarray(frame.convert("RGB"))
                        for k, frame in enumerate(ImageSequence.Iterator(img))
                        if k in wanted
                    }
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise DataError(f"cannot read animated image: {exc}", path=source) from None
        if len(kept) < len(wanted):
            raise DataError(
                f"the animated image declares {declared} frames but holds fewer",
                path=source,
            )
        return np.stack([kept[k] for k in index.tolist()]).transpose(0, 3, 1, 2)

    def _decode_pyav(self, opener: Callable[[], BinaryIO], source: str) -> np.ndarray:
        """A video file → the selected frames (K, 3, H, W) uint8, decoding the stream once (twice
        when the container does not say how many frames it holds, or says it wrongly)."""
        try:
            declared = self._pyav_pass(opener, None, source)[0]
            count, kept = self._pyav_pass(opener, self.sample_indices(declared), source)
            if count != declared:  # the container's frame count was wrong or missing
                count, kept = self._pyav_pass(opener, self.sample_indices(count), source)
        except av.error.FFmpegError as exc:
            reason = exc.strerror or str(exc)  # without the file name FFmpeg appends
            raise DataError(f"cannot decode video: {reason}", path=source) from None
        index = self.sample_indices(count)
        return np.stack([kept[k] for k in index.tolist()]).transpose(0, 3, 1, 2)

    def _pyav_pass(
        self, opener: Callable[[], BinaryIO], index: np.ndarray | None, source: str
    ) -> tuple[int, dict[int, np.ndarray]]:
        """With `index` None: the frame count the container declares, else the counted one
        (decoding). With `index`: decode every frame, keep those in `index` as (H, W, 3) RGB;
        return the number decoded and the kept frames. An empty stream is a DataError."""
        with opener() as f, av.open(f, mode="r") as container:
            if not container.streams.video:
                raise DataError("the file holds no video stream", path=source)
            stream = container.streams.video[0]
            _check_pixels(stream.codec_context.width, stream.codec_context.height, source)
            if index is None and stream.frames > 0:
                return stream.frames, {}
            wanted = set(index.tolist()) if index is not None else set()
            kept: dict[int, np.ndarray] = {}
            count = 0
            for frame in container.decode(stream):
                if count in wanted:
                    kept[count] = frame.to_ndarray(format="rgb24")
                count += 1
        if count == 0:
            raise DataError("the video has no frames", path=source)
        return count, kept

    def _select(self, array: np.ndarray, source: str | None) -> np.ndarray:
        """A frame array → the selected frames (K, C, H, W), values not yet scaled."""
        if array.ndim == 3:
            array = array[:, None]  # (T, H, W) → (T, 1, H, W)
        elif array.ndim == 4:
            if array.shape[-1] in (1, 3, 4) and array.shape[1] not in (1, 3, 4):
                array = array.transpose(0, 3, 1, 2)  # (T, H, W, C) → (T, C, H, W)
            elif array.shape[1] not in (1, 3, 4):
                raise DataError(
                    f"cannot find the channel axis (1, 3 or 4 channels) of shape "
                    f"{tuple(array.shape)}",
                    path=source,
                )
        else:
            raise DataError(
                f"a video array must be (T, H, W), (T, H, W, C) or (T, C, H, W), got shape "
                f"{tuple(array.shape)}",
                path=source,
            )
        if array.shape[0] == 0:
            raise DataError("the video has no frames", path=source)
        if array.dtype != np.uint8:  # every frame is checked, not only the selected ones
            check_finite(array, source)
            low, high = float(array.min()), float(array.max())
            if low < -1e-6 or high > 1 + 1e-6:
                raise DataError(
                    f"video values span [{low:.3g}, {high:.3g}], expected [0, 1] (or uint8)",
                    path=source,
                )
        return array[self.sample_indices(array.shape[0])]

    # -- to the contract ---------------------------------------------------------------------

    def _to_tensor(self, frames: np.ndarray, source: str | None) -> torch.Tensor:
        """(K, C, H, W) selected frames (uint8, or numbers in [0, 1]) → float32 in [0, 1] with the
        configured channels and size."""
        if frames.size == 0:
            raise DataError("the input is empty", path=source)
        if frames.dtype == np.uint8:
            tensor = torch.from_numpy(np.ascontiguousarray(frames)).to(torch.float32).div_(255.0)
        elif frames.dtype.kind in "iuf":  # finite and in [0, 1]: checked by `_select`
            values = np.ascontiguousarray(frames, dtype=np.float32)
            tensor = torch.from_numpy(values).clamp_(0, 1)
        else:
            raise DataError(f"unsupported video dtype {frames.dtype}", path=source)
        if tensor.shape[1] == 4:
            tensor = tensor[:, :3]  # drop alpha
        want = self.options.channels
        if tensor.shape[1] != want:
            tensor = tensor.mean(dim=1, keepdim=True) if want == 1 else tensor.repeat(1, 3, 1, 1)
        if tuple(tensor.shape[2:]) != tuple(self.options.size):
            tensor = F.interpolate(
                tensor, size=self.options.size, mode="bilinear", antialias=True, align_corners=False
            ).clamp(0, 1)
        return tensor.contiguous()


def _check_pixels(width: int, height: int, source: str) -> None:
    if width * height > MAX_PIXELS:
        raise DataError(
            f"the frames are {width}×{height} = {width * height:,} pixels, over the limit of "
            f"{MAX_PIXELS:,}; nothing was decoded",
            path=source,
        )
