"""The video_frames encoder: a nested image encoder per frame, temporal mean or attention;
what it reads of a random_segment batch; its nested config through the schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from anybind.config.load import config_from_dict
from anybind.encoders import build_encoder, encoder_options
from anybind.encoders.builtin_image import ImageCNN
from anybind.encoders.video_frames import VideoFrames
from anybind.errors import ConfigError
from anybind.modalities import build_modality

FRAME = {"type": "image_cnn", "width": 4, "stages": 2, "dropout": 0.0}


def _encoder(video: dict[str, Any] | None = None, **options: Any) -> VideoFrames:
    torch.manual_seed(0)
    modality = build_modality(
        "video", {"frames": 4, "size": (8, 8), "channels": 1, **(video or {})}
    )
    enc = build_encoder(
        encoder_options({"type": "video_frames", "frame": FRAME, **options}), modality
    )
    assert isinstance(enc, VideoFrames)
    return enc.eval()


def test_the_frame_encoder_is_the_configured_image_encoder() -> None:
    enc = _encoder()
    assert isinstance(enc.frame, ImageCNN)
    assert enc.frame.body[0][0].in_channels == 1  # the video's channels
    assert enc.embed_dim == enc.frame.embed_dim == 8  # width 4, 2 stages
    assert enc.init_target() is enc.frame
    # an image tower's encoder weights load into `frame.*` as they are
    image = build_encoder(encoder_options(FRAME), build_modality("image", {"size": (8, 8)}))
    assert set(image.state_dict()) == {
        k.removeprefix("frame.") for k in enc.state_dict() if k.startswith("frame.")
    }
    enc.frame.load_state_dict(image.state_dict())


@pytest.mark.parametrize(
    "options", [{}, {"temporal": "attention"}, {"temporal": "attention", "readout": "mean"}]
)
def test_output_shapes(options: dict[str, Any]) -> None:
    enc = _encoder(**options)
    out = enc(torch.rand(3, 4, 1, 8, 8))
    assert out.shape == (3, 8) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match=r"video_frames takes \(B, 4, C, H, W\), got \(3, 5, 1"):
        enc(torch.rand(3, 5, 1, 8, 8))


def test_mean_pooling_is_the_frame_mean_and_ignores_frame_order_exactly() -> None:
    enc = _encoder()
    clips = torch.rand(2, 4, 1, 8, 8)
    with torch.no_grad():
        out = enc(clips)
        per_frame = enc.frame(clips.flatten(0, 1)).view(2, 4, -1)
        torch.testing.assert_close(out, per_frame.mean(dim=1), rtol=0, atol=1e-6)
        for perm in ([3, 2, 1, 0], [1, 3, 0, 2], [2, 0, 3, 1]):
            assert torch.equal(enc(clips[:, perm]), out)


def test_temporal_attention_sees_the_order_of_the_frames() -> None:
    for readout in ("cls", "mean"):
        enc = _encoder(temporal="attention", readout=readout)
        clips = torch.rand(2, 4, 1, 8, 8)
        with torch.no_grad():
            out = enc(clips)
            reversed_ = enc(clips[:, [3, 2, 1, 0]])
        assert (out - reversed_).abs().max() > 1e-4, readout
        # without the position embeddings it would not: they are what carries the order
        enc.position.data.zero_()
        with torch.no_grad():
            torch.testing.assert_close(enc(clips[:, [3, 2, 1, 0]]), enc(clips), atol=1e-5, rtol=0)


def test_only_each_segments_middle_slot_reaches_the_frame_encoder() -> None:
    video = {"sampling": "random_segment", "segment_samples": 3}
    enc = _encoder(video, temporal="attention")
    clips = torch.rand(2, 12, 1, 8, 8)  # 4 segments × 3 slots
    middle = clips.view(2, 4, 3, 1, 8, 8)[:, :, 1]
    uniform = _encoder(temporal="attention")  # the same weights (seed 0), S = 1
    with torch.no_grad():
        out = enc(clips)
        assert torch.equal(out, uniform(middle))
        noise = clips.clone().view(2, 4, 3, 1, 8, 8)
        noise[:, :, [0, 2]] = torch.rand(2, 4, 2, 1, 8, 8)  # other slots do not matter
        assert torch.equal(enc(noise.view(2, 12, 1, 8, 8)), out)


def test_frames_run_as_one_batch_through_the_frame_encoder() -> None:
    enc = _encoder()
    shapes: list[tuple[int, ...]] = []
    enc.frame.register_forward_hook(lambda _m, args, _out: shapes.append(tuple(args[0].shape)))
    enc(torch.rand(3, 4, 1, 8, 8))
    assert shapes == [(12, 1, 8, 8)]


def test_heads_must_divide_the_frame_width() -> None:
    with pytest.raises(ConfigError, match="heads = 3 must divide the frame encoder's width 8"):
        _encoder(temporal="attention", heads=3)


def _config(tmp_path: Path, encoder: dict[str, Any], **video: Any) -> dict[str, Any]:
    np.savez(tmp_path / "d.npz", clips=np.zeros((4, 4, 8, 8)), captions=np.array(["a clip"] * 4))
    keys = {"video": "clips", "text": "captions"}
    return {
        "modalities": {
            "video": {"options": {"frames": 4, "size": [8, 8], **video}, "encoder": encoder},
            "text": {"encoder": {"type": "text_bytes", "width": 16, "layers": 1, "heads": 2}},
        },
        "space": {"dim": 8},
        "data": {"train": [{"type": "arrays", "path": str(tmp_path / "d.npz"), "keys": keys}]},
        "optim": {"steps": 1, "batch_size": 4},
    }


def test_the_schema_validates_the_nested_frame_config(tmp_path: Path) -> None:
    config = config_from_dict(
        _config(tmp_path, {"type": "video_frames", "frame": {"type": "image_cnn"}})
    )
    saved = config.modalities["video"].encoder
    assert saved["frame"] == {"type": "image_cnn", "width": 32, "stages": 3, "dropout": 0.1}
    assert saved["temporal"] == "mean"
    # the filled-in config reads back to the same options
    again = encoder_options(saved)
    assert again.model_dump(mode="json") == saved

    def refused(encoder: dict[str, Any], **video: Any) -> str:
        with pytest.raises(ConfigError) as info:
            config_from_dict(_config(tmp_path, encoder, **video))
        return str(info.value)

    typo = refused({"type": "video_frames", "frame": {"type": "image_cnn", "widht": 8}})
    assert "modalities.video.encoder.frame.widht: unknown key" in typo
    unknown = refused({"type": "video_frames", "frame": {"type": "nope"}})
    assert "modalities.video.encoder.frame: unknown encoder type 'nope'" in unknown
    not_image = refused({"type": "video_frames", "frame": {"type": "pointnet"}})
    assert "video_frames.frame: 'pointnet' encodes pointcloud, not image" in not_image
    nested = refused({"type": "video_frames", "frame": {"type": "video_frames"}})
    assert "'video_frames' encodes video, not image" in nested
    assert "segment_samples: uniform sampling" in refused(
        {"type": "video_frames"}, segment_samples=3
    )


def test_the_frame_encoders_own_check_sees_the_videos_size_and_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Any] = []

    def check(cls: type, options: Any, modality_options: Any) -> str | None:
        seen.append(modality_options)
        return "image_cnn needs 16×16 images" if modality_options.size != (16, 16) else None

    monkeypatch.setattr(ImageCNN, "check", classmethod(check))
    encoder = {"type": "video_frames", "frame": FRAME}
    with pytest.raises(
        ConfigError, match=r"modalities\.video: video_frames\.frame: image_cnn needs"
    ):
        config_from_dict(_config(tmp_path, encoder, channels=1))
    assert (seen[-1].size, seen[-1].channels) == ((8, 8), 1)
    config_from_dict(_config(tmp_path, encoder, size=[16, 16]))
    assert (seen[-1].size, seen[-1].channels) == ((16, 16), 3)
