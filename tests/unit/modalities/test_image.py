"""The image modality: file and array inputs → float32 (C, H, W) in [0, 1].

References: the raw pixel values written with Pillow / numpy, torch's own antialiased bilinear
interpolation, and the channel mean for colour → grey.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from anybind.errors import DataError
from anybind.modalities import build_modality


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def test_grey_png_round_trips_to_array_over_255(tmp_path: Path) -> None:
    pixels = _rng().integers(0, 256, size=(8, 8), dtype=np.uint8)
    path = tmp_path / "grey.png"
    Image.fromarray(pixels).save(path)
    out = build_modality("image", {"size": (8, 8)}).load(str(path))
    assert out.dtype == torch.float32
    assert out.shape == (1, 8, 8)
    np.testing.assert_array_equal(out[0].numpy(), pixels.astype(np.float32) / 255.0)


def test_rgb_png_round_trips_with_three_channels(tmp_path: Path) -> None:
    pixels = _rng(1).integers(0, 256, size=(6, 7, 3), dtype=np.uint8)
    path = tmp_path / "rgb.png"
    Image.fromarray(pixels).save(path)
    out = build_modality("image", {"size": (6, 7), "channels": 3}).load(path)  # a Path works too
    assert out.shape == (3, 6, 7)
    np.testing.assert_array_equal(out.numpy(), pixels.transpose(2, 0, 1) / np.float32(255.0))


def test_npy_file_is_read_as_the_array(tmp_path: Path) -> None:
    array = _rng(2).uniform(0, 1, size=(8, 8)).astype(np.float32)
    path = tmp_path / "x.npy"
    np.save(path, array)
    out = build_modality("image", {"size": (8, 8)}).load(str(path))
    np.testing.assert_array_equal(out[0].numpy(), array)


def test_uint8_is_divided_by_255_and_floats_by_input_max() -> None:
    raw = _rng(3).integers(0, 17, size=(8, 8))
    as_uint8 = build_modality("image", {"size": (8, 8)}).load(raw.astype(np.uint8))
    np.testing.assert_allclose(as_uint8[0].numpy(), raw / 255.0, rtol=0, atol=1e-7)
    # the same values as float with input_max=16 (the UCI digits): divided by 16, not by 255
    as_float = build_modality("image", {"size": (8, 8), "input_max": 16}).load(
        raw.astype(np.float64)
    )
    np.testing.assert_allclose(as_float[0].numpy(), raw / 16.0, rtol=0, atol=1e-7)
    # input_max is ignored for uint8 (always / 255)
    uint8_with_max = build_modality("image", {"size": (8, 8), "input_max": 16}).load(
        raw.astype(np.uint8)
    )
    np.testing.assert_array_equal(uint8_with_max.numpy(), as_uint8.numpy())


def test_hwc_and_chw_inputs_give_the_same_chw_tensor() -> None:
    chw = _rng(4).uniform(0, 1, size=(3, 10, 12)).astype(np.float32)
    hwc = np.ascontiguousarray(chw.transpose(1, 2, 0))
    image = build_modality("image", {"size": (10, 12), "channels": 3})
    a, b = image.load(chw), image.load(hwc)
    assert a.shape == b.shape == (3, 10, 12)
    np.testing.assert_array_equal(a.numpy(), chw)
    np.testing.assert_array_equal(b.numpy(), chw)
    # torch tensors are accepted like arrays
    np.testing.assert_array_equal(image.load(torch.from_numpy(hwc)).numpy(), chw)


def test_rgba_drops_alpha() -> None:
    rgba = _rng(5).uniform(0, 1, size=(6, 6, 4)).astype(np.float32)
    out = build_modality("image", {"size": (6, 6), "channels": 3}).load(rgba)
    np.testing.assert_array_equal(out.numpy(), rgba[..., :3].transpose(2, 0, 1))


def test_resize_matches_torch_antialiased_bilinear() -> None:
    array = _rng(6).uniform(0, 1, size=(3, 20, 30)).astype(np.float32)
    out = build_modality("image", {"size": (8, 12), "channels": 3}).load(array)
    reference = F.interpolate(
        torch.from_numpy(array)[None].double(),
        size=(8, 12),
        mode="bilinear",
        antialias=True,
        align_corners=False,
    )[0]
    assert out.shape == (3, 8, 12)
    np.testing.assert_allclose(out.numpy(), reference.clamp(0, 1).numpy(), atol=1e-6)
    # antialiasing really happens: differs from plain bilinear on a noisy image
    plain = F.interpolate(
        torch.from_numpy(array)[None].double(),
        size=(8, 12),
        mode="bilinear",
        antialias=False,
        align_corners=False,
    )[0]
    assert float((out.double() - plain).abs().max()) > 1e-2


def test_resize_of_a_constant_image_stays_constant_and_upsampling_works() -> None:
    out = build_modality("image", {"size": (16, 16)}).load(np.full((5, 7), 0.25, np.float32))
    assert out.shape == (1, 16, 16)
    np.testing.assert_allclose(out.numpy(), 0.25, atol=1e-6)


def test_rgb_to_grey_is_the_channel_mean() -> None:
    rgb = _rng(7).uniform(0, 1, size=(8, 8, 3))
    out = build_modality("image", {"size": (8, 8), "channels": 1}).load(rgb)
    assert out.shape == (1, 8, 8)
    np.testing.assert_allclose(out[0].numpy(), rgb.mean(axis=2), rtol=0, atol=1e-6)


def test_grey_to_rgb_repeats_the_channel() -> None:
    grey = _rng(8).uniform(0, 1, size=(8, 8)).astype(np.float32)
    out = build_modality("image", {"size": (8, 8), "channels": 3}).load(grey)
    assert out.shape == (3, 8, 8)
    for c in range(3):
        np.testing.assert_array_equal(out[c].numpy(), grey)


def test_placeholder_and_collate() -> None:
    image = build_modality("image", {"size": (4, 5), "channels": 3})
    ph = image.placeholder()
    assert ph.shape == (3, 4, 5) and float(ph.abs().sum()) == 0.0
    batch = image.collate([ph, image.load(np.ones((4, 5), np.float32))])
    assert batch.shape == (2, 3, 4, 5)
    assert float(batch[1].min()) == 1.0


def _assert_names(exc: pytest.ExceptionInfo[DataError], name: str) -> None:
    assert name in str(exc.value)
    assert exc.value.path == name


def test_corrupt_png_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(_rng(9).integers(0, 256, size=200, dtype=np.uint8).tobytes())
    with pytest.raises(DataError) as exc:
        build_modality("image", {"size": (8, 8)}).load(str(path))
    _assert_names(exc, str(path))


def test_truncated_png_raises_data_error(tmp_path: Path) -> None:
    path = tmp_path / "trunc.png"
    Image.fromarray(_rng(10).integers(0, 256, (32, 32), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:60])
    with pytest.raises(DataError) as exc:
        build_modality("image", {"size": (8, 8)}).load(str(path))
    _assert_names(exc, str(path))


def test_missing_file_raises_data_error_naming_the_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.png")
    with pytest.raises(DataError, match="not found") as exc:
        build_modality("image").load(path)
    _assert_names(exc, path)


def test_nan_array_raises_data_error_naming_the_source() -> None:
    array = np.zeros((8, 8), np.float32)
    array[3, 4] = np.nan
    with pytest.raises(DataError, match="NaN") as exc:
        build_modality("image", {"size": (8, 8)}).load(array, source="faces/0042.npy")
    _assert_names(exc, "faces/0042.npy")


def test_values_out_of_range_raise_data_error_naming_the_source() -> None:
    image = build_modality("image", {"size": (8, 8)})
    with pytest.raises(DataError, match="input_max") as exc:
        image.load(np.full((8, 8), 16.0), source="digits.npz")  # raw 0..16 without input_max
    _assert_names(exc, "digits.npz")
    with pytest.raises(DataError) as exc:
        image.load(np.full((8, 8), -0.5), source="neg.npy")
    _assert_names(exc, "neg.npy")
    # the edges 0 and 1 are fine
    out = image.load(np.array([[0.0, 1.0], [1.0, 0.0]]))
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0


def test_out_of_range_npy_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "big.npy"
    np.save(path, np.full((8, 8), 255.0))
    with pytest.raises(DataError) as exc:
        build_modality("image", {"size": (8, 8)}).load(str(path))
    _assert_names(exc, str(path))


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((2, 3, 4, 5)),
        np.zeros((5, 5, 5)),
        np.zeros((0, 4)),
        np.array([["a"]]),
        np.zeros((4, 4), dtype=bool),
    ],
)
def test_bad_shapes_and_dtypes_raise_data_error(bad: np.ndarray) -> None:
    with pytest.raises(DataError) as exc:
        build_modality("image").load(bad, source="arr")
    assert exc.value.path == "arr"


def test_non_path_non_array_raises_data_error() -> None:
    with pytest.raises(DataError, match="int"):
        build_modality("image").load(3, source="row")


def test_augment_keeps_shape_is_seed_reproducible_and_varies_with_the_seed() -> None:
    image = build_modality("image", {"size": (16, 16), "channels": 3})
    torch.manual_seed(0)
    batch = torch.rand(4, 3, 16, 16)
    torch.manual_seed(1)
    a = image.augment(batch)
    torch.manual_seed(1)
    b = image.augment(batch)
    torch.manual_seed(2)
    c = image.augment(batch)
    assert a.shape == batch.shape and a.dtype == batch.dtype
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float((a - c).abs().max()) > 1e-3
    assert float((a - batch).abs().max()) > 1e-3  # it does perturb
    assert bool(torch.isfinite(a).all())
    # zero fill and bilinear sampling keep values inside the input's range
    assert float(a.min()) >= -1e-6 and float(a.max()) <= 1 + 1e-6


def test_augment_is_close_to_identity_on_a_constant_centre() -> None:
    # a constant image: every interior pixel samples the same value whatever the affine map
    image = build_modality("image", {"size": (32, 32)})
    batch = torch.full((3, 1, 32, 32), 0.5)
    torch.manual_seed(3)
    out = image.augment(batch)
    torch.testing.assert_close(out[:, :, 12:20, 12:20], batch[:, :, 12:20, 12:20])


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    """A 17 kB PNG that declares 144 MP (1.6× PIL's limit) is named without being decoded; a
    bigger one (over 2×, where PIL itself raises) is named too."""
    modality = build_modality("image", {"size": (8, 8)})
    for side in (12000, 20000):
        path = tmp_path / f"bomb{side}.png"
        Image.new("1", (side, side)).save(path, optimize=True)
        assert path.stat().st_size < 100_000
        with pytest.raises(DataError) as info:
            modality.load(str(path))
        assert str(path) in str(info.value)
        assert "decompression bomb" in str(info.value).lower()


def test_an_npy_that_declares_a_huge_array_is_refused_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    with path.open("wb") as f:  # a header only: reading the data would need 40 GB
        header = {"descr": "<f4", "fortran_order": False, "shape": (100000, 100000)}
        np.lib.format.write_array_header_1_0(f, header)
    with pytest.raises(DataError, match="declares shape") as info:
        build_modality("image", {"size": (8, 8)}).load(str(path))
    assert str(path) in str(info.value)
