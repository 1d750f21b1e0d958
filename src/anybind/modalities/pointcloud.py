"""Point-cloud modality: an unordered set of 3-D points → float32 (points, 3 + features).

Input: a `.ply` file (the `vertex` element: x, y, z, then the first `features` other vertex
properties in file order; further properties and faces are ignored), a `.xyz`/`.txt` file (one
point per line, numbers separated by whitespace or commas, `#` starts a comment), a `.npy` file,
or an in-memory array/list shaped (n, 3 + features). Text, `.npy` and inline arrays must have
exactly 3 + `features` columns.

`load` is a pure function of its input (it may be cached):

- `normalize` (default true): xyz is centred on the centroid of all n input points and divided
  by the largest distance from it, so the cloud lies in the unit ball (features untouched);
- the cloud is brought to exactly `points` points: more are subsampled, `subsample: stride`
  keeping points floor(i·n/points) (evenly strided in file order), `subsample: farthest`
  by farthest-point sampling from the first point; fewer are padded by repeating the cloud
  cyclically (point i mod n). Max-pooling encoders see the same set after repeats; mean pooling
  weights the repeated points more.

`augment` (training, global torch RNG, each cloud of a batch on its own) rotates xyz (`rotate`:
`none`; `z`, about the z axis by an angle uniform in ±`max_angle` degrees; `so3`, a uniformly
random rotation), scales each axis by a factor uniform in `scale`, and adds Gaussian jitter of
std `jitter` clipped to ±`jitter_clip`. Extra feature channels are not changed.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from typing import Annotated, Any, BinaryIO, Literal

import numpy as np
import torch
from plyfile import PlyData, PlyParseError
from pydantic import Field, model_validator

from anybind.errors import DataError
from anybind.modalities.base import (
    MODALITIES,
    Modality,
    ModalityOptions,
    check_finite,
    numeric_array,
    read_input,
)
from anybind.options import Size

NonNegative = Annotated[float, Field(ge=0)]


class PointCloudOptions(ModalityOptions):
    #: every cloud is subsampled or padded to this many points
    points: Size = 256
    #: channels per point after x, y, z (normals, colours, intensity, ...)
    features: Annotated[int, Field(ge=0)] = 0
    #: centre xyz on the centroid and scale the cloud into the unit ball
    normalize: bool = True
    #: how a cloud with more than `points` points is reduced (both deterministic)
    subsample: Literal["stride", "farthest"] = "stride"
    #: training augmentation: random rotation of xyz
    rotate: Literal["none", "z", "so3"] = "z"
    #: the largest rotation angle for `rotate: z`, in degrees
    max_angle: Annotated[float, Field(gt=0, le=180)] = 180.0
    #: training augmentation: per-axis scale factors drawn uniformly from [low, high]
    scale: tuple[Annotated[float, Field(gt=0)], Annotated[float, Field(gt=0)]] = (0.9, 1.1)
    #: training augmentation: std of the Gaussian jitter added to xyz ...
    jitter: NonNegative = 0.01
    #: ... clipped to ± this
    jitter_clip: NonNegative = 0.05

    @model_validator(mode="after")
    def _scale_ordered(self) -> PointCloudOptions:
        if self.scale[0] > self.scale[1]:
            raise ValueError(f"scale: low {self.scale[0]} is above high {self.scale[1]}")
        return self


@MODALITIES.register("pointcloud")
class PointCloudModality(Modality):
    Options = PointCloudOptions
    contract = (
        "float32 (points, 3 + features): xyz (centred on the centroid and scaled into the unit "
        "ball when `normalize`), then the feature channels; subsampled or cyclically padded "
        "to `points`"
    )
    file_suffixes = (".ply", ".xyz", ".txt", ".npy")
    options: PointCloudOptions

    @property
    def columns(self) -> int:
        return 3 + self.options.features

    def load(self, raw: Any, *, source: str | None = None) -> torch.Tensor:
        array, source = read_input(self, raw, source, "point cloud", self._read)
        return self._to_tensor(array, source)

    def _read(self, opener: Callable[[], BinaryIO], suffix: str, source: str) -> np.ndarray:
        with opener() as f:
            return self._decode(f, suffix, source)

    def sample_indices(self, n: int) -> np.ndarray:
        """Which of n points (in input order) stride subsampling or cyclic padding keeps."""
        m = self.options.points
        if n >= m:
            return (np.arange(m, dtype=np.int64) * n) // m
        return np.arange(m, dtype=np.int64) % n

    def augment(self, batch: torch.Tensor) -> torch.Tensor:
        """Per cloud: rotation (`rotate`), per-axis scale (`scale`), clipped jitter (`jitter`)."""
        opts = self.options
        b = batch.shape[0]
        xyz = batch[..., :3]
        if opts.rotate == "z":
            angle = (torch.rand(b) * 2 - 1) * (opts.max_angle * torch.pi / 180)
            rotation = _z_rotation(angle)
        elif opts.rotate == "so3":
            rotation = _random_rotation(b)
        else:
            rotation = torch.eye(3).expand(b, 3, 3)
        low, high = opts.scale
        factor = low + (high - low) * torch.rand(b, 1, 3)
        noise = (torch.randn(xyz.shape) * opts.jitter).clamp(-opts.jitter_clip, opts.jitter_clip)
        rotation, factor, noise = (t.to(batch) for t in (rotation, factor, noise))
        xyz = torch.bmm(xyz, rotation.transpose(1, 2)) * factor + noise
        return torch.cat([xyz, batch[..., 3:]], dim=-1)

    def placeholder(self) -> torch.Tensor:
        return torch.zeros(self.options.points, self.columns)

    # -- reading ---------------------------------------------------------------------------

    def _decode(self, file: BinaryIO, suffix: str, source: str) -> np.ndarray:
        if suffix == ".ply":
            return self._read_ply(file, source)
        try:
            if suffix == ".npy":
                return numeric_array(np.load(file, allow_pickle=False), source, "a point cloud")
            text = file.read().decode("utf-8").replace(",", " ")
        except UnicodeDecodeError:
            message = "cannot read point cloud: the text file is not UTF-8"
            raise DataError(message, path=source) from None
        except (OSError, ValueError, EOFError) as exc:
            raise DataError(f"cannot read point cloud: {exc}", path=source) from None
        try:
            with warnings.catch_warnings():  # "input contained no data": refused below
                warnings.simplefilter("ignore", UserWarning)
                table = np.loadtxt(io.StringIO(text), dtype=np.float64, ndmin=2, comments="#")
        except ValueError as exc:  # ragged rows or words
            raise DataError(f"cannot read point cloud: {_one_line(exc)}", path=source) from None
        if table.size == 0:
            raise DataError("the point cloud has no points", path=source)
        return table

    def _read_ply(self, file: BinaryIO, source: str) -> np.ndarray:
        try:
            ply = PlyData.read(file)
        except (PlyParseError, OSError, ValueError, EOFError, IndexError, KeyError) as exc:
            message = f"cannot read PLY file: {_one_line(exc) or type(exc).__name__}"
            raise DataError(message, path=source) from None
        if "vertex" not in ply:
            raise DataError("the PLY file has no 'vertex' element", path=source)
        vertex = ply["vertex"]
        names = [p.name for p in vertex.properties]
        missing = [axis for axis in ("x", "y", "z") if axis not in names]
        if missing:
            raise DataError(
                f"the PLY vertices have no {', '.join(missing)} (properties: {', '.join(names)})",
                path=source,
            )
        extra = [name for name in names if name not in ("x", "y", "z")]
        want = self.options.features
        if len(extra) < want:
            raise DataError(
                f"pointcloud.features = {want}, but the PLY vertices have {len(extra)} properties "
                f"besides x, y, z ({', '.join(extra) or 'none'})",
                path=source,
            )
        try:
            columns = [np.asarray(vertex[name], dtype=np.float64) for name in ["x", "y", "z"]]
            columns += [np.asarray(vertex[name], dtype=np.float64) for name in extra[:want]]
        except (TypeError, ValueError) as exc:  # list properties cannot be one column
            raise DataError(f"cannot read PLY vertices: {exc}", path=source) from None
        return np.stack(columns, axis=1)

    # -- to the contract ---------------------------------------------------------------------

    def _to_tensor(self, array: np.ndarray, source: str | None) -> torch.Tensor:
        if array.dtype == np.bool_:
            raise DataError("a point cloud must hold numbers, not booleans", path=source)
        if array.ndim != 2 or array.shape[1] != self.columns:
            raise DataError(
                f"expected shape (points, {self.columns}) (3 + features = "
                f"{self.options.features}), got {tuple(array.shape)}",
                path=source,
            )
        if array.shape[0] == 0:
            raise DataError("the point cloud has no points", path=source)
        points = array.astype(np.float64)
        check_finite(points, source)
        if self.options.normalize:
            xyz = points[:, :3] - points[:, :3].mean(axis=0)
            radius = float(np.sqrt((xyz**2).sum(axis=1)).max())
            points[:, :3] = xyz / radius if radius > 0 else xyz
        n = points.shape[0]
        if n > self.options.points and self.options.subsample == "farthest":
            index = farthest_point_indices(points[:, :3], self.options.points)
        else:
            index = self.sample_indices(n)
        return torch.from_numpy(points[index].astype(np.float32))


def farthest_point_indices(xyz: np.ndarray, m: int) -> np.ndarray:
    """Farthest-point sampling of m of the n ≥ m points, starting from point 0: each next point
    is the one farthest from those chosen (ties: the lowest index). Deterministic."""
    n = xyz.shape[0]
    chosen = np.zeros(m, dtype=np.int64)
    distance = np.full(n, np.inf)
    for i in range(1, m):
        distance = np.minimum(distance, ((xyz - xyz[chosen[i - 1]]) ** 2).sum(axis=1))
        chosen[i] = int(np.argmax(distance))
    return chosen


def _z_rotation(angle: torch.Tensor) -> torch.Tensor:  # (B,) radians → (B, 3, 3)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(angle), torch.ones_like(angle)
    rows = [
        torch.stack([cos, -sin, zero], 1),
        torch.stack([sin, cos, zero], 1),
        torch.stack([zero, zero, one], 1),
    ]
    return torch.stack(rows, 1)


def _random_rotation(b: int) -> torch.Tensor:
    """b rotations uniform on SO(3): unit quaternions from normalised 4-D Gaussians."""
    q = torch.randn(b, 4)
    w, x, y, z = (q / q.norm(dim=1, keepdim=True)).unbind(1)
    rows = [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], 1),
        torch.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], 1),
        torch.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], 1),
    ]
    return torch.stack(rows, 1)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())
