"""Rich progress bars with throughput, shared by every long-running step."""

from __future__ import annotations

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class ThroughputColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else "", style="progress.data.speed")


def progress_bar(
    unit: str = "samples", *, disable: bool = False, transient: bool = True, fields: str = ""
) -> Progress:
    """A bar: description, bar, done/total, throughput, elapsed, remaining, and extra `fields`
    (a format string over task fields, e.g. "loss {task.fields[loss]:.3f}")."""
    columns: list[ProgressColumn | str] = [
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        ThroughputColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    if fields:
        columns.append(TextColumn(fields))
    return Progress(*columns, disable=disable, transient=transient)
