"""Time-series modality: a multichannel signal → float32 (channels + 1, length) with a mask row.

Input: a `.npy` file (shaped (length,) or (channels, length)), a `.csv` file (one row per time
step, one column per channel, no header), or an in-memory array/list of the same shapes. Pen
trajectories (x, y over time: 2 channels), IMU signals (6 channels) and sensor logs are
instances. Series may have any length up to `length`: each is divided by `scale`, cut at
`length` steps if longer, zero-padded at the end if shorter, and a last row marks the real steps
(1) against the padding (0), so encoders can pool over real steps only. A series longer than
`length` is an error unless `truncate` is set (silently dropping the end of a signal is rarely
what one wants).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch

from anybind.errors import DataError
from anybind.modalities.base import (
    MODALITIES,
    Modality,
    ModalityOptions,
    check_finite,
    read_input,
)
from anybind.options import Fraction, Positive, Size


class TimeseriesOptions(ModalityOptions):
    channels: Size = 1
    #: the longest series; shorter ones are padded and masked
    length: Size = 128
    #: values are divided by this (e.g. 100 for pen positions on a 0–100 grid)
    scale: Positive = 1.0
    #: cut series longer than `length` instead of refusing them
    truncate: bool = False
    #: training augmentation: random gain per series and channel, 1 ± `gain`
    gain: Fraction = 0.1
    #: training augmentation: Gaussian jitter, this fraction of each series' spread
    jitter: Fraction = 0.02
    #: training augmentation: random offset per series and channel, ± this (after `scale`)
    shift: float = 0.0


@MODALITIES.register("timeseries")
class TimeseriesModality(Modality):
    Options = TimeseriesOptions
    contract = (
        "float32 (channels + 1, length): the series divided by `scale`, zero-padded at the end "
        "to `length`; the last row is 1 at real steps and 0 at padding"
    )
    file_suffixes = (".npy", ".csv")
    options: TimeseriesOptions

    def load(self, raw: Any, *, source: str | None = None) -> torch.Tensor:
        array, source = read_input(self, raw, source, "time series", self._decode)
        return self._to_tensor(array, source)

    def _to_tensor(self, array: np.ndarray, source: str | None) -> torch.Tensor:
        opts = self.options
        if array.ndim == 1:
            array = array[None]
        if array.ndim != 2 or array.shape[0] != opts.channels:
            raise DataError(
                f"expected a series shaped ({opts.channels}, length), got {tuple(array.shape)}",
                path=source,
            )
        array = array.astype(np.float32)
        check_finite(array, source)
        steps = array.shape[1]
        if steps > opts.length and not opts.truncate:
            raise DataError(
                f"the series has {steps} steps, more than length {opts.length} (raise "
                "`length` or set `truncate`)",
                path=source,
            )
        n = min(steps, opts.length)
        out = np.zeros((opts.channels + 1, opts.length), dtype=np.float32)
        out[:-1, :n] = array[:, :n] / opts.scale
        out[-1, :n] = 1.0
        return torch.from_numpy(out)

    def _decode(self, opener: Callable[[], BinaryIO], suffix: str, source: str) -> np.ndarray:
        try:
            with opener() as f:
                data = f.read()
            if suffix == ".npy":
                array = np.load(io.BytesIO(data), allow_pickle=False)
            else:
                text = data.decode("utf-8")
                rows = [r for r in text.splitlines() if r.strip()]
                array = np.array(
                    [[float(v) for v in r.split(",")] for r in rows], dtype=np.float64
                ).T  # (length, channels) → (channels, length)
        except UnicodeDecodeError:
            raise DataError("the CSV is not UTF-8 text", path=source) from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read the time series: {exc}", path=source) from None
        if array.dtype.kind not in "biuf":
            raise DataError(f"a time series must hold numbers, not {array.dtype}", path=source)
        return array

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        """Per series and channel: a random gain (1 ± gain) and offset (± shift), and Gaussian
        jitter scaled by the series' spread; padding stays zero and the mask row is kept."""
        opts = self.options
        values, mask = batch[:, :-1], batch[:, -1:]
        b, c = values.shape[:2]
        gain = 1.0 + opts.gain * (2 * torch.rand(b, c, 1) - 1)
        offset = opts.shift * (2 * torch.rand(b, c, 1) - 1)
        spread = values.std(dim=2, keepdim=True)
        noise = torch.randn_like(values) * opts.jitter * spread
        values = (values * gain + offset + noise) * mask
        return torch.cat([values, mask], dim=1)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.options.channels + 1, self.options.length)


def series_and_mask(batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated batch (B, C + 1, L) → values (B, C, L) and a bool mask (B, L) of real steps."""
    return batch[:, :-1], batch[:, -1] > 0.5
