"""The video modality: video files (PyAV), animated GIFs, .npy and arrays → float32
(frames · S, C, H, W) in [0, 1].

References: the frames written into the files (exactly, through the lossless FFV1 codec and a
GIF palette; the position of a moving square through lossy MPEG-4), the segment-centre formula
computed naively, and the segments' frame ranges for `random_segment`.
"""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from anybind.errors import DataError
from anybind.modalities import build_modality
from anybind.modalities.base import EncodedFile


def _moving_square(n: int = 12, size: int = 16) -> np.ndarray:
    """(n, size, size, 3) uint8: a red 4×4 square on blue, one pixel further right per frame."""
    frames = np.zeros((n, size, size, 3), np.uint8)
    frames[..., 2] = 200
    for k in range(n):
        frames[k, 6:10, k : k + 4] = (255, 0, 0)
    return frames


def _write_video(path: Path, frames: np.ndarray, codec: str) -> None:
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=12)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "bgr0" if codec == "ffv1" else "yuv420p"
        stream.bit_rate = 2_000_000  # MPEG-4's default blurs a 16×16 square across frames
        container.start_encoding()  # writes the header even when there are no frames
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())


def _square_x(video: torch.Tensor) -> np.ndarray:
    """The red square's mean column in each frame of (K, 3, H, W)."""
    red = (video[:, 0] - video[:, 2]).clamp(min=0).sum(dim=1)  # (K, W)
    return ((red * torch.arange(red.shape[1])).sum(1) / red.sum(1)).numpy()


def test_lossless_video_file_gives_the_frames_at_the_segment_centres(tmp_path: Path) -> None:
    frames = _moving_square(12)
    _write_video(tmp_path / "clip.mkv", frames, "ffv1")  # FFV1 in Matroska: no frame count
    video = build_modality("video", {"frames": 4, "size": (16, 16)})
    out = video.load(str(tmp_path / "clip.mkv"))
    assert out.dtype == torch.float32 and out.shape == (4, 3, 16, 16)
    centres = [1, 4, 7, 10]  # floor((i + 1/2) * 12 / 4)
    np.testing.assert_array_equal(
        out.numpy(), frames[centres].transpose(0, 3, 1, 2) / np.float32(255)
    )
    # an encoded member of a shard decodes the same
    member = EncodedFile((tmp_path / "clip.mkv").read_bytes(), "000.mkv")
    assert torch.equal(video.load(member), out)


def test_lossy_mp4_keeps_the_order_and_count_of_frames(tmp_path: Path) -> None:
    _write_video(tmp_path / "clip.mp4", _moving_square(12), "mpeg4")
    every = build_modality("video", {"frames": 12, "size": (16, 16)}).load(tmp_path / "clip.mp4")
    assert every.shape == (12, 3, 16, 16)
    # the square's centre is at column k + 1.5 in frame k: the frames come in order, none lost
    np.testing.assert_allclose(_square_x(every), np.arange(12) + 1.5, atol=0.35)
    # 24 frames asked of 12: each frame twice, by index rounding (floor((i + 1/2) / 2))
    doubled = build_modality("video", {"frames": 24, "size": (16, 16)}).load(tmp_path / "clip.mp4")
    assert doubled.shape == (24, 3, 16, 16)
    assert torch.equal(doubled[0::2], every) and torch.equal(doubled[1::2], every)
    # grey and resized: the channel mean, then torch's antialiased bilinear resize
    small = build_modality("video", {"frames": 12, "size": (8, 8), "channels": 1}).load(
        tmp_path / "clip.mp4"
    )
    expected = F.interpolate(
        every.mean(1, keepdim=True), size=(8, 8), mode="bilinear", antialias=True
    ).clamp(0, 1)
    assert small.shape == (12, 1, 8, 8)
    torch.testing.assert_close(small, expected, rtol=0, atol=1e-6)


def test_gif_round_trip_equals_the_frames(tmp_path: Path) -> None:
    frames = _moving_square(10)
    images = [Image.fromarray(f) for f in frames]
    images[0].save(tmp_path / "a.gif", save_all=True, append_images=images[1:], duration=40)
    out = build_modality("video", {"frames": 10, "size": (16, 16)}).load(tmp_path / "a.gif")
    np.testing.assert_array_equal(out.numpy(), frames.transpose(0, 3, 1, 2) / np.float32(255))
    grey = build_modality("video", {"frames": 5, "size": (16, 16), "channels": 1})
    np.testing.assert_allclose(
        grey.load(tmp_path / "a.gif").numpy(),
        frames[[1, 3, 5, 7, 9]].mean(-1)[:, None] / 255,  # floor((i + 1/2) * 2)
        rtol=0,
        atol=1e-6,
    )


@pytest.mark.parametrize("layout", ["thw", "thwc", "tchw"])
def test_npy_and_arrays_in_every_layout(tmp_path: Path, layout: str) -> None:
    rng = np.random.default_rng(0)
    frames = rng.uniform(0, 1, size=(6, 3, 5, 7)).astype(np.float32)  # (T, C, H, W)
    if layout == "thw":
        frames = frames[:, :1]
    raw = {"thw": frames[:, 0], "thwc": frames.transpose(0, 2, 3, 1), "tchw": frames}[layout]
    channels = 1 if layout == "thw" else 3
    video = build_modality("video", {"frames": 6, "size": (5, 7), "channels": channels})
    np.save(tmp_path / "v.npy", raw)
    for value in (raw, torch.from_numpy(raw), str(tmp_path / "v.npy")):
        out = video.load(value)
        assert out.shape == (6, channels, 5, 7)
        np.testing.assert_array_equal(out.numpy(), frames)
    # uint8 is divided by 255; one grey channel becomes three equal ones
    pixels = (frames[:, :1] * 255).astype(np.uint8)
    rgb = build_modality("video", {"frames": 6, "size": (5, 7), "channels": 3}).load(pixels)
    np.testing.assert_array_equal(rgb.numpy(), np.repeat(pixels, 3, axis=1) / np.float32(255))


def test_uniform_indices_equal_the_naive_segment_centres() -> None:
    for t in (1, 3, 8):
        video = build_modality("video", {"frames": t})
        for n in range(1, 40):
            naive = [min(int((i + 0.5) * n / t), n - 1) for i in range(t)]
            assert video.sample_indices(n).tolist() == naive, (t, n)


def _index_clip(n: int) -> np.ndarray:
    """(n, 1, 2, 2) uint8 whose frame k holds the value k: the output tells which frame it is."""
    return np.repeat(np.arange(n, dtype=np.uint8), 4).reshape(n, 1, 2, 2)


def _indices(video: torch.Tensor) -> np.ndarray:
    return np.rint(video[..., 0, 0, 0].numpy() * 255).astype(int)


def test_random_segment_loads_four_candidates_per_segment_and_eval_is_uniform() -> None:
    opts = {"frames": 4, "size": (2, 2), "channels": 1}
    tsn = build_modality("video", {**opts, "sampling": "random_segment"})
    loaded = tsn.load(_index_clip(40))
    assert loaded.shape == (16, 1, 2, 2)
    # segment i spans frames [10i, 10i + 10); candidates at 0, 2.5, 5, 7.5 into it; slot 2 = centre
    expected = [[10 * i + d for d in (0, 2, 5, 7)] for i in range(4)]
    assert _indices(loaded).reshape(4, 4).tolist() == expected
    uniform = build_modality("video", opts).load(_index_clip(40))
    assert _indices(uniform).tolist() == [5, 15, 25, 35]
    assert torch.equal(loaded.reshape(4, 4, 1, 2, 2)[:, 2], uniform)  # what encoders read


def test_random_segment_augment_picks_inside_each_segment_only() -> None:
    tsn = build_modality(
        "video", {"frames": 4, "size": (2, 2), "channels": 1, "sampling": "random_segment"}
    )
    batch = torch.stack([tsn.load(_index_clip(40)), tsn.load(_index_clip(20))])  # (2, 16, ...)
    torch.manual_seed(0)
    seen: list[set[int]] = [set() for _ in range(8)]
    for _ in range(50):
        out = tsn.augment(batch)
        assert out.shape == batch.shape
        slots = out.reshape(2, 4, 4, 1, 2, 2)
        before = batch.reshape(2, 4, 4, 1, 2, 2)
        # only the middle slot changes, and to one of its own segment's candidates
        assert torch.equal(slots[:, :, [0, 1, 3]], before[:, :, [0, 1, 3]])
        for c in range(2):
            for i in range(4):
                seen[4 * c + i].add(int(_indices(slots[c, i, 2][None])[0]))
    long = [{10 * i + d for d in (0, 2, 5, 7)} for i in range(4)]
    short = [{5 * i + d for d in (0, 1, 2, 3)} for i in range(4)]  # 20 frames: 0, 1.25, 2.5, 3.75
    assert seen == long + short  # every candidate drawn, nothing from outside the segment
    # the global torch RNG decides
    torch.manual_seed(3)
    first = tsn.augment(batch)
    torch.manual_seed(3)
    assert torch.equal(tsn.augment(batch), first)
    # uniform sampling: augment changes nothing
    uniform = build_modality("video", {"frames": 4, "size": (2, 2), "channels": 1})
    clip = uniform.load(_index_clip(40))[None]
    assert torch.equal(uniform.augment(clip), clip)


def test_options_refuse_segment_samples_with_uniform_sampling() -> None:
    with pytest.raises(ValueError, match="segment_samples: uniform sampling loads one frame"):
        build_modality("video", {"sampling": "uniform", "segment_samples": 3})
    three = build_modality("video", {"sampling": "random_segment", "segment_samples": 3})
    assert three.options.slots == 3 and three.placeholder().shape == (24, 3, 32, 32)
    assert build_modality("video").placeholder().shape == (8, 3, 32, 32)


def test_bad_inputs_are_data_errors_naming_the_file(tmp_path: Path) -> None:
    video = build_modality("video", {"frames": 4, "size": (8, 8)})

    def error(raw: object, source: str | None = None) -> str:
        with pytest.raises(DataError) as info:
            video.load(raw, source=source)
        return str(info.value)

    assert error(str(tmp_path / "gone.mp4")).endswith("gone.mp4): video file not found")
    (tmp_path / "junk.mp4").write_bytes(b"not a video at all " * 50)
    assert "junk.mp4): cannot decode video: Invalid data" in error(tmp_path / "junk.mp4")
    _write_video(tmp_path / "empty.avi", np.zeros((0, 16, 16, 3), np.uint8), "mpeg4")
    assert "empty.avi): the video has no frames" in error(tmp_path / "empty.avi")
    _write_video(tmp_path / "empty.mp4", np.zeros((0, 16, 16, 3), np.uint8), "mpeg4")
    assert "empty.mp4): the file holds no video stream" in error(tmp_path / "empty.mp4")
    (tmp_path / "junk.gif").write_bytes(b"GIF89a" + b"\0" * 20)
    assert "junk.gif): cannot read animated image" in error(tmp_path / "junk.gif")
    nan = np.full((5, 8, 8), 0.5)
    nan[3, 1, 1] = np.nan  # an unselected frame: still refused
    np.save(tmp_path / "nan.npy", nan)
    assert "nan.npy): the input holds NaN" in error(tmp_path / "nan.npy")
    assert "a video array must be (T, H, W)" in error(np.zeros((8, 8)), "row 2")
    assert "file row 2" in error(np.zeros((8, 8)), "row 2")
    assert "cannot find the channel axis" in error(np.zeros((4, 5, 8, 8)))
    assert "the video has no frames" in error(np.zeros((0, 8, 8)))
    over = np.full((40, 8, 8), 0.5)
    over[0, 0, 0] = 2.0  # frame 0 is not among the 4 sampled ones
    assert "video values span [0.5, 2], expected [0, 1]" in error(over)
    assert "a video must be a file path or an array, got int" in error(3)
