"""Token stems of every modality, the shared transformer body with its three feed-forward kinds,
and the `token_transformer` / `backbone` encoders."""

from __future__ import annotations

import pytest
import torch

from anybind.encoders.backbone import Backbone, BackboneOptions
from anybind.encoders.token_transformer import (
    BackboneEncoder,
    BackboneEncoderOptions,
    TokenTransformer,
    TokenTransformerOptions,
)
from anybind.encoders.tokens import build_stem, check_stem
from anybind.modalities import MODALITIES, build_modality


def make(kind: str, **options):
    return build_modality(kind, MODALITIES.get(kind).Options(**options))


@pytest.mark.parametrize(
    ("kind", "options", "batch", "patch", "tokens"),
    [
        ("image", {"size": [8, 8], "channels": 1}, torch.rand(3, 1, 8, 8), 2, 16),
        ("audio", {"frames": 20, "n_mels": 10}, torch.randn(3, 10, 20), 4, 5),
        ("audio", {"representation": "waveform", "max_seconds": 0.01}, torch.randn(3, 80), 16, 5),
        ("timeseries", {"channels": 2, "length": 12}, None, 3, 4),
        ("pointcloud", {"points": 32}, torch.randn(3, 32, 3), 1, 32),
        ("video", {"frames": 2, "size": [8, 8], "channels": 1}, torch.rand(3, 2, 1, 8, 8), 4, 8),
    ],
)
def test_stems_give_one_token_per_patch_frame_step_or_point(kind, options, batch, patch, tokens):
    m = make(kind, **options)
    if batch is None:  # a series batch: values and a mask row of real steps
        batch = torch.cat([torch.randn(3, 2, 12), torch.ones(3, 1, 12)], dim=1)
    stem = build_stem(m, width=8, patch=patch, max_tokens=16)
    x, pad = stem(batch)
    assert x.shape == (3, tokens, 8) and pad.shape == (3, tokens) and not pad.any()


def test_an_image_token_is_the_linear_map_of_its_patch():
    stem = build_stem(make("image", size=[8, 8], channels=1), width=4, patch=2, max_tokens=1)
    images = torch.rand(2, 1, 8, 8)
    x, _ = stem(images)
    w = stem.embed.weight.reshape(4, -1)  # (width, 1·2·2)
    patch = images[:, 0, 2:4, 6:8].reshape(2, -1)  # patch row 1, column 3: token 1·4 + 3
    expected = patch @ w.T + stem.embed.bias + stem.position[0, 7]
    torch.testing.assert_close(x[:, 7], expected)


def test_text_and_series_padding_is_masked():
    stem = build_stem(make("text"), width=8, patch=1, max_tokens=10)
    _, pad = stem(["ab", "", "a longer one"])
    assert pad[0].tolist() == [False, False] + [True] * 8
    assert pad[1].tolist() == [False] + [True] * 9  # an empty text keeps one position
    assert not pad[2].any()
    series = torch.zeros(2, 2, 6)
    series[:, -1, :4] = 1.0  # 4 real steps of 6
    stem = build_stem(make("timeseries", channels=1, length=6), width=8, patch=2, max_tokens=1)
    _, pad = stem(series)
    assert pad.tolist() == [[False, False, True]] * 2


def test_a_patch_that_does_not_divide_the_image_is_refused():
    assert "does not divide" in check_stem(make("image", size=[8, 8]).options, 3)
    assert check_stem(make("image", size=[8, 8]).options, 4) is None


def test_a_text_is_encoded_the_same_alone_and_in_a_padded_batch():
    torch.manual_seed(0)
    enc = TokenTransformer(TokenTransformerOptions(width=16, heads=2, max_tokens=24), make("text"))
    enc.eval()
    alone = enc(["two"])
    batched = enc(["two", "a much longer caption here"])
    torch.testing.assert_close(alone[0], batched[0], atol=1e-5, rtol=1e-5)


def test_a_point_cloud_transformer_ignores_the_order_of_points():
    torch.manual_seed(0)
    enc = TokenTransformer(
        TokenTransformerOptions(width=16, heads=2), make("pointcloud", points=32)
    )
    enc.eval()
    clouds = torch.randn(2, 32, 3)
    shuffled = clouds[:, torch.randperm(32)]
    torch.testing.assert_close(enc(clouds), enc(shuffled), atol=1e-5, rtol=1e-5)


def test_modality_experts_share_attention_and_keep_their_own_ffn():
    torch.manual_seed(0)
    backbone = Backbone(BackboneOptions(ffn="experts", width=8, heads=2, hidden=16), ["a", "b"])
    x = torch.randn(2, 5, 8)
    pad = torch.zeros(2, 5, dtype=torch.bool)
    backbone(x, pad, "a").sum().backward()
    block = backbone.blocks[0]
    assert block.attention.in_proj_weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in block.ffn.experts["a"].parameters())
    assert all(p.grad is None for p in block.ffn.experts["b"].parameters())
    with pytest.raises(ValueError, match="no expert"):
        backbone(x, pad, "c")


def test_padded_tokens_change_nothing_of_the_real_ones():
    torch.manual_seed(0)
    for ffn in ("shared", "experts", "moe"):
        backbone = Backbone(BackboneOptions(ffn=ffn, width=8, heads=2, hidden=16), ["a"]).eval()
        x = torch.randn(1, 6, 8)
        pad = torch.tensor([[False, False, False, False, True, True]])
        other = x.clone()
        other[0, 4:] = 100.0
        torch.testing.assert_close(backbone(x, pad, "a")[0, :4], backbone(other, pad, "a")[0, :4])


def test_a_routed_backbone_counts_tokens_and_records_routing_only_in_training():
    torch.manual_seed(0)
    options = BackboneOptions(ffn="moe", width=8, heads=2, hidden=8, layers=2, experts=4, top_k=2)
    backbone = Backbone(options, ["a", "b"])
    x = torch.randn(3, 5, 8)
    pad = torch.zeros(3, 5, dtype=torch.bool)
    pad[0, 3:] = True  # 13 real tokens
    backbone.eval()
    backbone(x, pad, "a")
    assert backbone.take_routing() == []
    load = backbone.load()
    assert [sum(layer) for layer in load["a"]] == [26, 26]  # 13 tokens × top-2, per layer
    assert load["b"] == [[0] * 4, [0] * 4]
    backbone.train()
    backbone(x, pad, "b")
    terms = backbone.balance_terms()
    assert set(terms) == {"moe_load", "moe_global_entropy"} and terms["moe_load"].requires_grad
    assert backbone.balance_terms() == {}  # taken
    backbone.reset_load()
    assert backbone.load()["a"] == [[0] * 4, [0] * 4]


def test_a_backbone_encoder_runs_the_body_it_is_attached_to():
    torch.manual_seed(0)
    body = Backbone(BackboneOptions(ffn="shared", width=8, heads=2, hidden=16), ["image"])
    enc = BackboneEncoder(BackboneEncoderOptions(width=8, patch=4), make("image", size=[8, 8]))
    assert not any(name.startswith("_shared") for name, _ in enc.named_parameters())
    enc.attach(body, "image")
    out = enc(torch.rand(2, 1, 8, 8))
    assert out.shape == (2, 8)
    out.sum().backward()
    assert body.blocks[0].attention.in_proj_weight.grad is not None
