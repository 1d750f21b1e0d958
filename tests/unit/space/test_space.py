from __future__ import annotations

import math

import pytest
import torch
from conftest import tiny_config

from anybind.config import config_from_dict, save_config
from anybind.errors import ConfigError
from anybind.space import Space, load_space, save_space


@pytest.fixture
def space(tiny_npz) -> Space:
    torch.manual_seed(0)
    return Space(config_from_dict(tiny_config(tiny_npz))).eval()


def test_embeddings_are_unit_norm_and_similarity_is_scaled_cosine(space):
    img = space.embed("image", torch.rand(5, 1, 8, 8))
    txt = space.embed("text", ["a", "bb", "ccc"])
    assert img.shape == (5, 16) and txt.shape == (3, 16)
    assert torch.allclose(img.norm(dim=1), torch.ones(5), atol=1e-6)
    expected = (1 / 0.07) * img @ txt.T
    assert torch.allclose(space.similarity(img, txt), expected, rtol=1e-5)


def test_logit_scale_is_clamped(space):
    with torch.no_grad():
        space.log_logit_scale.fill_(50.0)
    assert space.logit_scale().item() == pytest.approx(100.0)
    with torch.no_grad():
        space.log_logit_scale.fill_(-3.0)
    assert space.logit_scale().item() == pytest.approx(1.0)


def test_forward_fills_absent_rows_with_zeros(space):
    batch = {
        "image": torch.rand(4, 1, 8, 8),
        "image_mask": torch.tensor([1, 0, 1, 1]).bool(),
        "text": ["a", "[missing]", "c", "d"],
        "text_mask": torch.tensor([0, 1, 1, 0]).bool(),
    }
    out = space(batch)
    assert torch.all(out["image"][1] == 0) and torch.all(out["text"][0] == 0)
    direct = space.embed("image", batch["image"][[0, 2, 3]])
    assert torch.allclose(out["image"][[0, 2, 3]], direct, atol=1e-6)


def test_freezing_follows_the_config(tiny_npz):
    data = tiny_config(tiny_npz)
    data["modalities"]["text"]["freeze_encoder"] = True
    space = Space(config_from_dict(data))
    text = space.towers["text"]
    assert not any(p.requires_grad for p in text.encoder.parameters())
    assert all(p.requires_grad for p in text.projection.parameters())
    assert text.cache_features
    # cached features equal the encoder's own output
    first = text(["hello", "world"])
    again = text(["world", "hello"])
    assert torch.allclose(first.flip(0), again)
    space.train()
    assert not text.encoder.training  # a frozen tower keeps its encoder in eval mode


def test_identity_projection_needs_matching_widths(tiny_npz):
    data = tiny_config(tiny_npz)
    data["modalities"]["text"]["projection"] = {"type": "identity"}
    data["modalities"]["text"]["encoder"]["width"] = 24  # space.dim is 16
    with pytest.raises(ConfigError, match="identity"):
        Space(config_from_dict(data))


def test_save_and_load_give_identical_embeddings(tmp_path, space):
    save_space(space, tmp_path)
    loaded = load_space(tmp_path)
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(space.embed("image", x), loaded.embed("image", x))
    assert math.isclose(space.logit_scale().item(), loaded.logit_scale().item())


def test_frozen_text_features_do_not_depend_on_the_batch(tiny_npz):
    """Exact resume needs a caption's cached features to be the same whichever batch first
    met it: batched padding would change float rounding, so strings are encoded one by one."""
    data = tiny_config(tiny_npz)
    data["modalities"]["text"]["freeze_encoder"] = True
    tower = Space(config_from_dict(data)).towers["text"]
    seen: list[int] = []
    encoder_forward = tower.encoder.forward
    tower.encoder.forward = lambda batch: seen.append(len(batch)) or encoder_forward(batch)
    first = tower.features(["a", "a much longer caption", "a"])
    assert seen == [1, 1]  # each distinct string once, alone
    tower._cache.clear()
    alone = tower.features(["a"])
    assert torch.equal(first[0], alone[0]) and torch.equal(first[0], first[2])


def test_weights_of_another_shape_are_named_not_a_traceback(tmp_path, tiny_npz):
    from anybind.errors import AnybindError

    config = config_from_dict(tiny_config(tiny_npz))
    save_space(Space(config), tmp_path)
    wider = config_from_dict(tiny_config(tiny_npz, **{"space.dim": 24}))
    save_config(wider, tmp_path / "config.yaml")  # the config now disagrees with the weights
    with pytest.raises(AnybindError, match=r"\(16, .*in the weights, \(24, .*in the config"):
        load_space(tmp_path)
