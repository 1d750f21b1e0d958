"""The modality contract: raw input → tensor with a documented shape, dtype and unit.

A modality turns what a user holds (a file path, an array, a string) into the tensor an encoder
consumes, and stacks a list of those into a batch. It knows nothing about encoders or the space.
"""

from __future__ import annotations

import io
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, ClassVar

import numpy as np
import torch

from anybind.errors import DataError
from anybind.options import Options
from anybind.registry import Registry


@dataclass(frozen=True, slots=True)
class EncodedFile:
    """A file's bytes held in memory (a member of a tar shard): decoded like the file `name`."""

    data: bytes
    name: str

    @property
    def suffix(self) -> str:
        return os.path.splitext(self.name)[1].lower()

    def open(self) -> io.BytesIO:
        return io.BytesIO(self.data)


class ModalityOptions(Options):
    """Preprocessing options of a modality (see `anybind.options.Options`)."""


class Modality(ABC):
    """One kind of input. Subclasses set `name`, `Options` and `contract`."""

    name: ClassVar[str]
    Options: ClassVar[type[ModalityOptions]] = ModalityOptions
    #: Human-readable description of what `load` returns (shape, dtype, unit).
    contract: ClassVar[str]
    #: File suffixes `load` reads from disk (lower case, with the dot).
    file_suffixes: ClassVar[tuple[str, ...]] = ()

    def __init__(self, options: ModalityOptions | None = None):
        self.options = options if options is not None else self.Options()

    def use_feature_cache(self, root: str | None) -> None:
        """Keep expensive frozen features computed by `load` in an on-disk cache under `root`
        (None: no cache). Modalities whose `load` is cheap ignore it."""
        return None

    @abstractmethod
    def load(self, raw: Any, *, source: str | None = None) -> Any:
        """Turn one raw input (path, array or value) into the tensor described by `contract`.

        `source` names where the input came from (a file, a manifest row) for error messages.
        Raises DataError on unreadable or invalid input.
        """

    def collate(self, items: list[Any]) -> Any:
        """Stack loaded items (all present) into a batch; tensors by default."""
        return torch.stack(items)

    def augment(self, batch: Any) -> Any:
        """Random training-time perturbation of a collated batch (identity by default).

        Uses the global torch RNG, which the training loop seeds per step for exact resumes.
        """
        return batch

    @abstractmethod
    def placeholder(self) -> Any:
        """A value that stands in for an absent input so that a batch keeps its shape."""

    def is_file(self, raw: Any) -> bool:
        """A path on disk or an encoded file in memory: the modality decodes it."""
        return isinstance(raw, EncodedFile) or self.is_path(raw)

    def is_path(self, raw: Any) -> bool:
        if isinstance(raw, Path):
            return True
        return isinstance(raw, str) and Path(raw).suffix.lower() in self.file_suffixes


#: decodes a file's bytes: (opener of the binary file, its lower-case suffix, source) → value
FileDecoder = Callable[[Callable[[], BinaryIO], str, str], Any]


def read_input(
    modality: Modality,
    raw: Any,
    source: str | None,
    what: str,
    decode: FileDecoder,
) -> tuple[Any, str | None]:
    """The usual `load` dispatch: a tar-shard member or a path on disk goes through `decode`,
    an inline array/list becomes a numeric array, anything else is a DataError. Returns the
    value and the source to name in later messages (a path names itself)."""
    if isinstance(raw, EncodedFile):
        name = source or raw.name
        return decode(raw.open, raw.suffix, name), name
    if modality.is_path(raw):
        path = Path(raw)
        name = source or str(raw)
        if not path.is_file():
            raise DataError(f"{what} file not found", path=name)
        return decode(lambda: path.open("rb"), path.suffix.lower(), name), name
    if isinstance(raw, np.ndarray | torch.Tensor | list | tuple):
        return numeric_array(raw, source, f"a {what}"), source
    raise DataError(
        f"a {what} must be a file path or an array, got {type(raw).__name__}", path=source
    )


def numeric_array(raw: Any, source: str | None, what: str) -> np.ndarray:
    """An inline value as an array of real numbers, or a DataError that says what is wrong
    (ragged nested lists, strings, complex numbers)."""
    try:
        array = np.asarray(raw)
    except ValueError:  # nested lists of unequal lengths
        message = f"{what} must be a rectangular array of numbers (ragged rows)"
        raise DataError(message, path=source) from None
    if array.dtype.kind not in "biuf":
        kind = "complex numbers" if array.dtype.kind == "c" else f"dtype {array.dtype}"
        raise DataError(f"{what} must hold real numbers, not {kind}", path=source)
    return array


def check_finite(array: np.ndarray, source: str | None) -> None:
    if array.size == 0:
        raise DataError("the input is empty", path=source)
    if not np.all(np.isfinite(array)):
        raise DataError("the input holds NaN or infinite values", path=source)


MODALITIES: Registry[type[Modality]] = Registry("modality", names_attribute="name")
