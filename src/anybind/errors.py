"""User-facing errors. Each one names the file, row or config key that caused it."""

from __future__ import annotations


class AnybindError(Exception):
    """Base class: the CLI prints these as one clear line instead of a traceback."""


class ConfigError(AnybindError):
    """An invalid configuration: names the key (dotted path) and the file."""

    def __init__(self, message: str, *, key: str | None = None, file: str | None = None):
        self.key = key
        self.file = file
        self.detail = message
        where = []
        if file:
            where.append(f"file {file}")
        if key:
            where.append(f"key '{key}'")
        prefix = f"config error ({', '.join(where)}): " if where else "config error: "
        super().__init__(prefix + message)


class DataError(AnybindError):
    """Bad input data: names the file and/or the row of the manifest it came from."""

    def __init__(self, message: str, *, path: str | None = None, row: int | None = None):
        self.path = path
        self.row = row
        self.detail = message
        where = []
        if path is not None:
            where.append(f"file {path}")
        if row is not None:
            where.append(f"row {row}")
        prefix = f"data error ({', '.join(where)}): " if where else "data error: "
        super().__init__(prefix + message)


class IncompleteRunWarning(UserWarning):
    """A run that failed or did not finish is being used as it is (`allow_incomplete`)."""


class TrainingError(AnybindError):
    """Training cannot go on (e.g. a non-finite loss); the last good checkpoint is kept."""


def storage_message(exc: OSError) -> str:
    """One line for a failed read or write: the file, and what the system said (a full disk,
    a read-only folder, a path through a file)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write or read {exc.filename}: {reason}" if exc.filename else reason
