"""Text modality: a string → the same string, stripped and checked non-empty.

Tokenisation belongs to the text encoder (each pretrained encoder ships its own tokenizer), so a
text batch is a list of str. Files ending in .txt are read as UTF-8.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anybind.errors import DataError
from anybind.modalities.base import MODALITIES, EncodedFile, Modality, ModalityOptions
from anybind.options import Size


class TextOptions(ModalityOptions):
    max_chars: Size = 2000


@MODALITIES.register("text")
class TextModality(Modality):
    Options = TextOptions
    contract = "str (UTF-8, stripped, non-empty, at most `max_chars` characters); batch: list[str]"
    file_suffixes = (".txt",)
    options: TextOptions

    def is_path(self, raw: Any) -> bool:
        """A string is a file path only if it ends in .txt and has no whitespace: a caption
        such as "see notes.txt" stays text."""
        if isinstance(raw, str) and any(c.isspace() for c in raw.strip()):
            return False
        return super().is_path(raw)

    def load(self, raw: Any, *, source: str | None = None) -> str:
        if isinstance(raw, EncodedFile):
            source = source or raw.name
            try:
                raw = raw.data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"cannot read text: {exc}", path=source) from exc
        elif self.is_path(raw):
            path = Path(raw)
            source = source or str(raw)
            try:
                raw = path.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise DataError(f"cannot read text file: {exc}", path=source) from exc
        if not isinstance(raw, str):
            raise DataError(f"text must be a string, got {type(raw).__name__}", path=source)
        text = raw.strip()
        if not text:
            raise DataError("the text is empty", path=source)
        return text[: self.options.max_chars]

    def collate(self, items: list[Any]) -> list[str]:
        return list(items)

    def placeholder(self) -> str:
        return "[missing]"
