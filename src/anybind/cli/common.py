"""Shared CLI plumbing: errors become one red line and exit code 2, never a traceback."""

from __future__ import annotations

import functools
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console

from anybind.errors import AnybindError, IncompleteRunWarning, storage_message

console = Console(stderr=True)
F = TypeVar("F", bound=Callable[..., Any])
default_showwarning = warnings.showwarning


def show_warning(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """anybind's own warnings as one yellow line; others as Python prints them."""
    if issubclass(category, IncompleteRunWarning):
        console.print(f"[bold yellow]warning:[/] {message}", highlight=False, soft_wrap=True)
    else:
        default_showwarning(message, category, *_, **__)


def friendly_errors(func: F) -> F:
    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        warnings.showwarning = show_warning
        try:
            return func(*args, **kwargs)
        except AnybindError as exc:
            console.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:  # the disk, not the code: a full disk, a read-only folder
            console.print(
                f"[bold red]error:[/] {storage_message(exc)}", highlight=False, soft_wrap=True
            )
            raise typer.Exit(2) from None
        except MemoryError:
            console.print("[bold red]error:[/] out of memory (try a smaller batch or data.cache)")
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            console.print("[yellow]interrupted[/]: the last checkpoint is kept; --resume goes on")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def write_json(data: Any, path: Path | None) -> None:
    if path is None:
        return
    from anybind.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2))
    console.print(f"wrote {path}")
