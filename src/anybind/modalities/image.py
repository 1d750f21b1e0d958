"""Image modality: a picture → float32 tensor (C, H, W), values in [0, 1].

Reads PNG/JPEG/BMP/GIF/TIFF files (Pillow) and `.npy` arrays, or in-memory arrays shaped (H, W),
(H, W, C) or (C, H, W) with C in {1, 3, 4}. uint8 arrays are divided by 255; float arrays are
divided by `input_max` (1.0 unless configured, e.g. 16 for the UCI digits) and must then lie in
[0, 1]. The result is resized (bilinear, antialiased) to `size` and converted to `channels`.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from anybind.errors import DataError
from anybind.modalities.base import (
    MODALITIES,
    EncodedFile,
    Modality,
    ModalityOptions,
    check_finite,
    numeric_array,
)
from anybind.options import Positive, Size


class ImageOptions(ModalityOptions):
    size: tuple[Size, Size] = (32, 32)
    channels: Literal[1, 3] = 1
    input_max: Positive | None = None


@MODALITIES.register("image")
class ImageModality(Modality):
    Options = ImageOptions
    contract = "float32 (C, H, W) in [0, 1]; C and (H, W) from the options `channels` and `size`"
    file_suffixes = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".npy", ".webp")
    options: ImageOptions

    def load(self, raw: Any, *, source: str | None = None) -> torch.Tensor:
        if isinstance(raw, EncodedFile):
            array = self._decode(raw.open(), raw.suffix, source or raw.name)
        elif self.is_path(raw):
            source = source or str(raw)
            array = self._read_file(Path(raw), source)
        elif isinstance(raw, np.ndarray | torch.Tensor | list):
            array = numeric_array(raw, source, "an image")
        else:
            raise DataError(
                f"an image must be a file path or an array, got {type(raw).__name__}", path=source
            )
        return self._to_tensor(array, source)

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        """Random affine per image: rotation ±10°, scale 0.9–1.1, shift ±10% (zero fill)."""
        b = batch.shape[0]
        angle = (torch.rand(b) * 2 - 1) * (10 * torch.pi / 180)
        scale = 0.9 + 0.2 * torch.rand(b)
        shift = (torch.rand(b, 2) * 2 - 1) * 0.2  # grid units span [-1, 1]: 0.2 = 10%
        cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
        theta = torch.stack(
            [torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1
        )  # (B, 2, 3)
        grid = F.affine_grid(theta.to(batch.dtype), list(batch.shape), align_corners=False)
        return F.grid_sample(
            batch, grid.to(batch.device), padding_mode="zeros", align_corners=False
        )

    def placeholder(self) -> torch.Tensor:
        h, w = self.options.size
        return torch.zeros(self.options.channels, h, w)

    def _read_file(self, path: Path, source: str) -> np.ndarray:
        if not path.is_file():
            raise DataError("image file not found", path=source)
        return self._decode(path, path.suffix.lower(), source)

    def _decode(self, file: Path | BinaryIO, suffix: str, source: str) -> np.ndarray:
        try:
            if suffix == ".npy":
                _require_small_npy(file, source)
                return np.load(file, allow_pickle=False)
            with warnings.catch_warnings():  # PIL warns on the header; the check below names it
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(file)  # reads the header only
            with img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise DataError(
                        f"the image is {width}×{height} = {width * height:,} pixels, over the "
                        f"limit of {MAX_PIXELS:,} (a decompression bomb?); nothing was decoded",
                        path=source,
                    )
                img.load()
                mode = "L" if self.options.channels == 1 else "RGB"
                return np.asarray(img if img.mode == mode else img.convert(mode))
        except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
            raise DataError(f"cannot read image: {exc}", path=source) from exc

    def _to_tensor(self, array: np.ndarray, source: str | None) -> torch.Tensor:
        if array.dtype == np.uint8:  # decoded pixels: finite and in [0, 1] once scaled
            if array.size == 0:
                raise DataError("the input is empty", path=source)
            if array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3, 4):
                array = array.transpose(2, 0, 1)  # (H, W, C) → (C, H, W) on the bytes
            pixels = torch.from_numpy(np.array(array, order="C"))  # a writeable uint8 copy
            tensor = pixels.to(torch.float32).div_(255.0)
        elif np.issubdtype(array.dtype, np.number) and array.dtype != np.bool_:
            scaled = array.astype(np.float32) / float(self.options.input_max or 1.0)
            check_finite(scaled, source)
            if scaled.min() < -1e-6 or scaled.max() > 1 + 1e-6:
                raise DataError(
                    f"image values span [{scaled.min():.3g}, {scaled.max():.3g}] after scaling, "
                    "expected [0, 1]: set image.input_max to the largest raw value",
                    path=source,
                )
            tensor = torch.from_numpy(np.ascontiguousarray(scaled))
        else:
            raise DataError(f"unsupported image dtype {array.dtype}", path=source)
        if tensor.ndim == 2:
            tensor = tensor[None]
        elif tensor.ndim == 3:
            if tensor.shape[-1] in (1, 3, 4) and tensor.shape[0] not in (1, 3, 4):
                tensor = tensor.permute(2, 0, 1)
        else:
            raise DataError(
                f"an image must have 2 or 3 dimensions, got shape {tuple(array.shape)}", path=source
            )
        if tensor.shape[0] == 4:  # drop alpha
            tensor = tensor[:3]
        if tensor.shape[0] not in (1, 3):
            raise DataError(f"cannot read channels from shape {tuple(array.shape)}", path=source)
        tensor = self._match_channels(tensor)
        if tuple(tensor.shape[1:]) != tuple(self.options.size):
            tensor = F.interpolate(
                tensor[None],
                size=self.options.size,
                mode="bilinear",
                antialias=True,
                align_corners=False,
            )[0].clamp(0, 1)
        return tensor.contiguous()

    def _match_channels(self, tensor: torch.Tensor) -> torch.Tensor:
        want = self.options.channels
        if tensor.shape[0] == want:
            return tensor
        if want == 1:
            return tensor.mean(dim=0, keepdim=True)
        return tensor.expand(3, -1, -1)


#: the most pixels an image file may declare before it is decoded: PIL's own limit
#: (Image.MAX_IMAGE_PIXELS, ~89 MP); anything larger is refused from its header
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485


def _require_small_npy(file: Path | BinaryIO, source: str) -> None:
    """Refuse an .npy whose header declares more than MAX_PIXELS × 4 values, before reading."""
    if isinstance(file, Path):
        with open(file, "rb") as f:
            shape = _npy_shape(f)
    else:
        start = file.tell()
        shape = _npy_shape(file)
        file.seek(start)
    if shape is None:
        return  # not a valid .npy header: np.load names the problem
    count = int(np.prod(shape, dtype=np.float64))
    if count > MAX_PIXELS * 4:
        raise DataError(
            f"the array declares shape {tuple(shape)} ({count:,} values), over the limit of "
            f"{MAX_PIXELS * 4:,}; nothing was read",
            path=source,
        )


def _npy_shape(f: BinaryIO) -> tuple[int, ...] | None:
    fmt = np.lib.format
    try:
        major, _ = fmt.read_magic(f)
        read = fmt.read_array_header_1_0 if major == 1 else fmt.read_array_header_2_0
        return tuple(read(f)[0])
    except ValueError:
        return None
