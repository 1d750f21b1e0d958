"""The time-series encoders pool over the real steps only: padding never changes a series'
features, and the masked pooling equals a naive loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anybind.encoders import build_encoder, encoder_options
from anybind.encoders.series_cnn import masked_mean_max
from anybind.modalities import build_modality


def test_masked_mean_max_equals_a_loop():
    g = torch.Generator().manual_seed(0)
    h = torch.randn(3, 4, 6, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1] * 6, [1, 0, 0, 0, 0, 0]], dtype=torch.bool)
    out = masked_mean_max(h, mask)
    for b in range(3):
        real = h[b][:, mask[b]]
        torch.testing.assert_close(out[b], torch.cat([real.mean(dim=1), real.amax(dim=1)]))


@pytest.mark.parametrize(
    "encoder",
    [
        {"type": "series_cnn", "width": 8, "stages": 2},
        {"type": "series_transformer", "width": 16, "layers": 1, "heads": 2},
    ],
)
def test_what_the_padding_holds_does_not_change_the_features(encoder):
    torch.manual_seed(0)
    modality = build_modality("timeseries", {"channels": 2, "length": 10})
    model = build_encoder(encoder_options(encoder), modality).eval()
    rng = np.random.default_rng(0)
    batch = torch.stack([modality.load(rng.normal(size=(2, n))) for n in (4, 7, 10)])
    dirty = batch.clone()
    dirty[0, :2, 4:] = 5.0  # garbage where the mask says padding
    dirty[1, :2, 7:] = -3.0
    with torch.no_grad():
        clean_out, dirty_out = model(batch), model(dirty)
    assert clean_out.shape == (3, model.embed_dim)
    torch.testing.assert_close(dirty_out, clean_out)
    changed = batch.clone()
    changed[0, 0, 1] += 1.0  # a real step does change them
    with torch.no_grad():
        assert not torch.allclose(model(changed)[0], clean_out[0])
