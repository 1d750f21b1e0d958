"""The pointnet encoder: shapes, exact invariance to the order of the points, sensitivity to
where they are, and its config through the schema."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anybind.config.load import config_from_dict
from anybind.encoders import build_encoder, encoder_options
from anybind.encoders.pointnet import PointNet
from anybind.errors import ConfigError
from anybind.modalities import build_modality


def _encoder(pool: str = "max", features: int = 0, points: int = 50) -> PointNet:
    torch.manual_seed(0)
    cloud = build_modality("pointcloud", {"points": points, "features": features})
    enc = build_encoder(
        encoder_options({"type": "pointnet", "widths": [16, 32], "pool": pool}), cloud
    )
    assert isinstance(enc, PointNet)
    enc.train()
    enc(torch.randn(8, points, 3 + features))  # move the BatchNorm statistics off their init
    return enc.eval()


@pytest.mark.parametrize(("pool", "width"), [("max", 32), ("max+mean", 64)])
def test_output_shape_and_embed_dim(pool: str, width: int) -> None:
    enc = _encoder(pool, features=2)
    assert enc.embed_dim == width
    out = enc(torch.randn(5, 50, 5))
    assert out.shape == (5, width) and out.dtype == torch.float32
    with pytest.raises(ValueError, match=r"pointnet takes \(B, points, 5\), got \(5, 50, 3\)"):
        enc(torch.randn(5, 50, 3))


@pytest.mark.parametrize("pool", ["max", "max+mean"])
def test_any_permutation_of_the_points_gives_the_same_bits(pool: str) -> None:
    enc = _encoder(pool)
    x = torch.randn(4, 50, 3)
    with torch.no_grad():
        reference = enc(x)
        generator = torch.Generator().manual_seed(1)
        for _ in range(10):
            perm = torch.randperm(50, generator=generator)
            assert torch.equal(enc(x[:, perm]), reference)
        # every cloud of the batch permuted differently, too
        shuffled = torch.stack([x[i, torch.randperm(50, generator=generator)] for i in range(4)])
        assert torch.equal(enc(shuffled), reference)


def test_moving_one_point_changes_the_output() -> None:
    enc = _encoder("max+mean")
    x = torch.randn(2, 50, 3)
    moved = x.clone()
    moved[0, 7] += torch.tensor([3.0, -2.0, 1.0])  # far out: it wins the max of some channels
    with torch.no_grad():
        a, b = enc(x), enc(moved)
    assert (a[0] - b[0]).abs().max() > 1e-3
    assert torch.equal(a[1], b[1])  # the other cloud is untouched (eval: no batch statistics)


def test_duplicated_points_do_not_change_max_pooling() -> None:
    # the modality pads a small cloud by repeating it: max pooling sees the same set
    enc = _encoder("max", points=8)
    cloud = build_modality("pointcloud", {"points": 8})
    small = np.random.default_rng(0).normal(size=(3, 3))
    padded = cloud.load(small)
    exact = build_modality("pointcloud", {"points": 3}).load(small)
    with torch.no_grad():
        assert torch.equal(enc(padded[None]), enc(exact[None, [0, 1, 2, 0, 1, 2, 0, 1]]))
        np.testing.assert_array_equal(
            enc(padded[None]).numpy(), enc(torch.cat([exact, exact, exact[:2]])[None]).numpy()
        )
        # and equals the max over the 3 distinct points: repeats add nothing
        per_point = enc.per_point(exact[None].transpose(1, 2))
        assert torch.equal(enc(padded[None])[0], per_point.amax(dim=2)[0])


def test_the_schema_takes_a_pointnet_config(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", clouds=np.zeros((4, 16, 3)), captions=np.array(["a"] * 4))
    keys = {"pointcloud": "clouds", "text": "captions"}
    raw = {
        "modalities": {
            "pointcloud": {
                "options": {"points": 16, "rotate": "so3"},
                "encoder": {"type": "pointnet", "widths": [8]},
            },
            "text": {"encoder": {"type": "text_bytes", "width": 16, "layers": 1, "heads": 2}},
        },
        "space": {"dim": 8},
        "data": {"train": [{"type": "arrays", "path": str(tmp_path / "d.npz"), "keys": keys}]},
        "optim": {"steps": 1, "batch_size": 4},
    }
    config = config_from_dict(raw)
    assert config.modalities["pointcloud"].encoder == {
        "type": "pointnet",
        "widths": [8],
        "pool": "max",
        "activation": "relu",
    }
    assert config.modalities["pointcloud"].options["scale"] == [0.9, 1.1]
    raw["modalities"]["pointcloud"]["encoder"]["widths"] = []
    with pytest.raises(ConfigError, match=r"modalities\.pointcloud\.encoder\.widths"):
        config_from_dict(raw)
    raw["modalities"]["pointcloud"]["encoder"]["widths"] = [8]
    raw["modalities"]["pointcloud"]["options"]["scale"] = [1.2, 0.8]
    with pytest.raises(ConfigError, match="scale: low 1.2 is above high 0.8"):
        config_from_dict(raw)
