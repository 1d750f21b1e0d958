"""Modalities: one file each, registered with `@MODALITIES.register(name)` beside the class; a
new modality is one file plus its import here (docs/adding-a-modality.md)."""

from __future__ import annotations

from typing import Any

# importing a modality's file registers it
from anybind.modalities import (  # noqa: F401
    audio,
    image,
    pointcloud,
    text,
    timeseries,  # noqa: F401
    video,
)
from anybind.modalities.base import MODALITIES, EncodedFile, Modality, ModalityOptions


def build_modality(kind: str, options: dict[str, Any] | ModalityOptions | None = None) -> Modality:
    cls = MODALITIES.get(kind)
    if isinstance(options, dict):
        options = cls.Options(**options)
    return cls(options)


__all__ = ["MODALITIES", "EncodedFile", "Modality", "ModalityOptions", "build_modality"]
