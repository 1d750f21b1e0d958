"""The pointcloud modality: .ply / .xyz / .txt / .npy / arrays → float32 (points, 3 + features).

References: the arrays written to the files, the centroid / unit-ball normalisation computed by
hand with numpy, the strided and cyclic index formulas, and rotation matrices' invariants.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from anybind.errors import DataError
from anybind.modalities import build_modality
from anybind.modalities.base import EncodedFile
from anybind.modalities.pointcloud import farthest_point_indices


def _cloud(n: int, seed: int = 0, columns: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, columns)).astype(np.float32)


def _write_ply(path: Path, points: np.ndarray, names: list[str], text: bool = False) -> None:
    vertex = np.empty(len(points), dtype=[(name, "f4") for name in names])
    for k, name in enumerate(names):
        vertex[name] = points[:, k]
    PlyData([PlyElement.describe(vertex, "vertex")], text=text).write(str(path))


def _normalised(points: np.ndarray) -> np.ndarray:
    out = points.astype(np.float64).copy()
    xyz = out[:, :3] - out[:, :3].mean(axis=0)
    out[:, :3] = xyz / np.linalg.norm(xyz, axis=1).max()
    return out.astype(np.float32)


def test_files_of_every_format_load_as_the_array(tmp_path: Path) -> None:
    points = _cloud(64)
    _write_ply(tmp_path / "binary.ply", points, ["x", "y", "z"])
    _write_ply(tmp_path / "ascii.ply", points, ["x", "y", "z"], text=True)
    np.save(tmp_path / "c.npy", points)
    np.savetxt(tmp_path / "c.xyz", points, fmt="%.9g")  # whitespace
    np.savetxt(tmp_path / "c.txt", points, fmt="%.9g", delimiter=",", header="x,y,z")  # commas
    cloud = build_modality("pointcloud", {"points": 64, "normalize": False})
    expected = cloud.load(points)
    np.testing.assert_array_equal(expected.numpy(), points)  # 64 points: kept as they are
    for name in ("binary.ply", "ascii.ply", "c.npy", "c.xyz", "c.txt"):
        out = cloud.load(str(tmp_path / name))
        assert out.dtype == torch.float32 and out.shape == (64, 3), name
        np.testing.assert_array_equal(out.numpy(), points, err_msg=name)
    member = EncodedFile((tmp_path / "binary.ply").read_bytes(), "0001.ply")
    np.testing.assert_array_equal(cloud.load(member).numpy(), points)
    np.testing.assert_array_equal(cloud.load(points.tolist()).numpy(), points)


def test_ply_features_are_the_first_other_vertex_properties(tmp_path: Path) -> None:
    table = _cloud(10, columns=7)  # x, nx, y, z, red, green, blue: xyz not first in the file
    _write_ply(tmp_path / "f.ply", table, ["x", "nx", "y", "z", "red", "green", "blue"])
    out = build_modality("pointcloud", {"points": 10, "features": 2, "normalize": False}).load(
        tmp_path / "f.ply"
    )
    np.testing.assert_array_equal(out.numpy(), table[:, [0, 2, 3, 1, 4]])  # x y z nx red
    # features: 0 ignores the extra properties
    xyz = build_modality("pointcloud", {"points": 10, "normalize": False}).load(tmp_path / "f.ply")
    np.testing.assert_array_equal(xyz.numpy(), table[:, [0, 2, 3]])


def test_normalize_centres_on_the_centroid_and_fits_the_unit_ball() -> None:
    points = _cloud(32, seed=1, columns=4) * 5 + 3  # one feature channel
    out = build_modality("pointcloud", {"points": 32, "features": 1}).load(points)
    np.testing.assert_allclose(out.numpy(), _normalised(points), rtol=0, atol=1e-6)
    np.testing.assert_allclose(out[:, :3].mean(0).numpy(), 0, atol=1e-6)
    assert np.linalg.norm(out[:, :3].numpy(), axis=1).max() == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_array_equal(out[:, 3].numpy(), points[:, 3])  # features untouched
    # a single point is centred to the origin, not divided by zero
    one = build_modality("pointcloud", {"points": 4}).load([[2.0, 3.0, 4.0]])
    np.testing.assert_array_equal(one.numpy(), np.zeros((4, 3), np.float32))


def test_subsampling_is_evenly_strided_and_padding_repeats_cyclically() -> None:
    cloud = build_modality("pointcloud", {"points": 8, "normalize": False})
    big = _cloud(20, seed=2)
    stride = [0, 2, 5, 7, 10, 12, 15, 17]  # floor(i * 20 / 8)
    np.testing.assert_array_equal(cloud.load(big).numpy(), big[stride])
    small = _cloud(3, seed=3)
    np.testing.assert_array_equal(cloud.load(small).numpy(), small[[0, 1, 2, 0, 1, 2, 0, 1]])
    # a pure function of the input: loading again, or through a file, gives the same bits
    assert torch.equal(cloud.load(big), cloud.load(big.copy()))


def test_farthest_point_sampling_is_deterministic_and_spreads_out() -> None:
    # two tight clusters of 50 points and 2 outliers: FPS picks the outliers before cluster-mates
    rng = np.random.default_rng(4)
    points = np.concatenate(
        [rng.normal(0, 0.01, (50, 3)), rng.normal(5, 0.01, (50, 3)), [[0, 10, 0], [10, 0, 0]]]
    ).astype(np.float32)
    index = farthest_point_indices(points.astype(np.float64), 4)
    # from point 0 (cluster A): both outliers (10 away), then cluster B (8.7 from the chosen)
    assert index[0] == 0 and set(index[1:3].tolist()) == {100, 101} and 50 <= index[3] < 100
    cloud = build_modality("pointcloud", {"points": 4, "subsample": "farthest"})
    out = cloud.load(points)
    np.testing.assert_allclose(out.numpy(), _normalised(points)[index], rtol=0, atol=1e-6)
    assert torch.equal(cloud.load(points.copy()), out)  # a pure function of the input


def test_augment_rotation_keeps_norms_and_z_rotation_keeps_z() -> None:
    batch = torch.from_numpy(np.stack([_cloud(16, seed=s, columns=4) for s in range(3)]))
    plain = {"points": 16, "features": 1, "scale": (1.0, 1.0), "jitter": 0.0}
    torch.manual_seed(0)
    z = build_modality("pointcloud", {**plain, "rotate": "z"}).augment(batch)
    torch.manual_seed(0)
    so3 = build_modality("pointcloud", {**plain, "rotate": "so3"}).augment(batch)
    for out in (z, so3):
        assert out.shape == batch.shape
        torch.testing.assert_close(out[..., :3].norm(dim=-1), batch[..., :3].norm(dim=-1))
        assert torch.equal(out[..., 3], batch[..., 3])  # the feature channel is not rotated
        assert (out[..., :3] - batch[..., :3]).abs().max() > 0.1  # it did rotate
    torch.testing.assert_close(z[..., 2], batch[..., 2], rtol=0, atol=1e-6)
    # each cloud of the batch gets its own rotation, and pairwise distances are kept (rigid)
    angle = [
        torch.atan2(z[i, 0, 1], z[i, 0, 0]) - torch.atan2(batch[i, 0, 1], batch[i, 0, 0])
        for i in range(3)
    ]
    assert len({round(float(a) % (2 * np.pi), 4) for a in angle}) == 3
    torch.testing.assert_close(
        torch.cdist(so3[..., :3], so3[..., :3]),
        torch.cdist(batch[..., :3], batch[..., :3]),
        rtol=0,
        atol=1e-5,
    )
    # so3 moves z too
    assert (so3[..., 2] - batch[..., 2]).abs().max() > 0.1


def test_augment_scale_and_jitter_stay_in_their_ranges() -> None:
    batch = torch.ones(64, 32, 3)
    torch.manual_seed(1)
    scaled = build_modality(
        "pointcloud", {"rotate": "none", "scale": (0.8, 1.2), "jitter": 0.0}
    ).augment(batch)
    factors = scaled[:, 0, :]  # one factor per cloud and axis, the same for all its points
    assert torch.equal(scaled, factors[:, None, :].expand_as(scaled))
    assert 0.8 <= factors.min() < 0.85 and 1.15 < factors.max() <= 1.2
    assert factors.std(dim=1).min() > 0  # anisotropic: the axes differ
    jittered = build_modality(
        "pointcloud", {"rotate": "none", "scale": (1.0, 1.0), "jitter": 0.1, "jitter_clip": 0.05}
    ).augment(batch)
    noise = jittered - batch
    assert noise.abs().max() == pytest.approx(0.05)  # clipped
    assert 0.04 < noise.std() < 0.07  # sigma 0.1 clipped at 0.05
    # the global torch RNG decides: the same seed, the same augmentation
    aug = build_modality("pointcloud", {"rotate": "so3"})
    torch.manual_seed(7)
    first = aug.augment(batch)
    torch.manual_seed(7)
    assert torch.equal(aug.augment(batch), first)


def test_bad_inputs_are_data_errors_naming_the_file(tmp_path: Path) -> None:
    cloud = build_modality("pointcloud", {"points": 8})

    def error(raw: object, source: str | None = None) -> str:
        with pytest.raises(DataError) as info:
            cloud.load(raw, source=source)
        return str(info.value)

    assert error(str(tmp_path / "missing.ply")).endswith("missing.ply): point cloud file not found")
    (tmp_path / "four.xyz").write_text("1 2 3 4\n5 6 7 8\n")
    assert "expected shape (points, 3)" in error(tmp_path / "four.xyz")
    assert "four.xyz" in error(tmp_path / "four.xyz")
    (tmp_path / "ragged.txt").write_text("1 2 3\n4 5\n")
    assert "ragged.txt): cannot read point cloud" in error(tmp_path / "ragged.txt")
    (tmp_path / "nan.xyz").write_text("1 2 3\nnan 5 6\n")
    assert "nan.xyz): the input holds NaN" in error(tmp_path / "nan.xyz")
    (tmp_path / "empty.xyz").write_text("# nothing\n")
    assert "empty.xyz): the point cloud has no points" in error(tmp_path / "empty.xyz")
    (tmp_path / "broken.ply").write_bytes(b"ply\nformat binary_little_endian 1.0\nelement vert")
    assert "broken.ply): cannot read PLY file" in error(tmp_path / "broken.ply")
    _write_ply(tmp_path / "xy.ply", _cloud(5, columns=2), ["x", "y"])
    assert "xy.ply): the PLY vertices have no z" in error(tmp_path / "xy.ply")
    _write_ply(tmp_path / "plain.ply", _cloud(5), ["x", "y", "z"])
    needs = build_modality("pointcloud", {"features": 1})
    with pytest.raises(DataError, match=r"plain.ply\): pointcloud.features = 1"):
        needs.load(tmp_path / "plain.ply")
    assert "file row 3): the input holds NaN" in error([[1, 2, 3], [np.inf, 0, 0]], "row 3")
    assert "ragged rows" in error([[1, 2, 3], [3]])
    assert "a point cloud must be a file path or an array" in error(5)
    assert "no points" in error(np.zeros((0, 3)))
