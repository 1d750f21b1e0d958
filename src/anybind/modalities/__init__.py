"""Modalities: one file each, registered here by name. A new modality is one file + one line."""

from __future__ import annotations

from typing import Any

from anybind.modalities.audio import AudioModality
from anybind.modalities.base import EncodedFile, Modality, ModalityOptions
from anybind.modalities.image import ImageModality
from anybind.modalities.text import TextModality
from anybind.registry import Registry

MODALITIES: Registry[type[Modality]] = Registry("modality")
MODALITIES.register("image")(ImageModality)
MODALITIES.register("audio")(AudioModality)
MODALITIES.register("text")(TextModality)


def build_modality(kind: str, options: dict[str, Any] | ModalityOptions | None = None) -> Modality:
    cls = MODALITIES.get(kind)
    if isinstance(options, dict):
        options = cls.Options(**options)
    return cls(options)


__all__ = ["MODALITIES", "EncodedFile", "Modality", "ModalityOptions", "build_modality"]
