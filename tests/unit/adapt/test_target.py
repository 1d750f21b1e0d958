"""Which modality a target data set adapts, and which of its rows take part."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from anybind.adapt.run import TargetDomain, target_modality
from anybind.data.dataset import MultiModalDataset
from anybind.data.sample import Sample
from anybind.errors import AnybindError


def _space(*modalities: str) -> SimpleNamespace:
    return SimpleNamespace(
        towers={m: SimpleNamespace(modality=SimpleNamespace(name=m)) for m in modalities},
        derived_names=lambda: [],
    )


def _data(rows: list[dict[str, object]]) -> MultiModalDataset:
    samples = [
        Sample(values={m: torch.zeros(2) for m in row["has"]}, label=row["y"], id=str(i))
        for i, row in enumerate(rows)
    ]
    return MultiModalDataset(samples, {}, ["a", "b"])


MIXED = [{"has": ["image", "text"], "y": i % 2} for i in range(6)] + [
    {"has": ["audio"], "y": i % 2} for i in range(4)
]


def test_one_non_text_modality_is_picked_without_asking():
    data = _data([{"has": ["audio", "text"], "y": 0}, {"has": ["audio"], "y": 1}])
    assert target_modality(_space("image", "audio", "text"), data) == "audio"


def test_a_manifest_of_image_and_audio_asks_for_the_modality_and_takes_it():
    space, data = _space("image", "audio", "text"), _data(MIXED)
    with pytest.raises(AnybindError, match="holds image and audio: pass --modality"):
        target_modality(space, data)
    assert target_modality(space, data, "audio") == "audio"
    with pytest.raises(AnybindError, match="no such modality"):
        target_modality(space, data, "video")
    with pytest.raises(AnybindError, match="holds none"):
        target_modality(_space("image", "audio", "depth"), data, "depth")


def test_the_domain_keeps_only_the_rows_holding_the_modality():
    domain = TargetDomain.build("t", _data(MIXED), "audio", eval_fraction=0.5)
    assert len(domain.dataset) == 4
    assert all("audio" in s.values for s in domain.dataset.samples)
    assert [s.id for s in domain.dataset.samples] == ["6", "7", "8", "9"]
    split = domain.split_record()
    assert split["adapt_samples"] + split["eval_samples"] == 4 and split["overlap"] == 0
