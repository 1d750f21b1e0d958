"""What state a run folder is in: `status.json`, written by training, read by everything that
loads a run.

    {"state": "running",  "step": 40, "total": 100, "checkpoint": "step-00000040"}
    {"state": "failed",   "step": 41, "total": 100, "checkpoint": "step-00000040",
     "message": "step 41: the loss is nan …"}
    {"state": "complete", "step": 100, "total": 100}

A run is `running` from the moment its folder is created until it finishes (`complete`) or
stops on an error (`failed`); a run killed from outside stays `running`. Loading a run that is
not complete is refused unless asked for (`allow_incomplete`), and then says which weights it
holds. A folder without the file was written by `save_space` (or before the file existed): a
space as it is, complete.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from anybind.checkpoint import atomic_write_text
from anybind.errors import AnybindError

STATUS = "status.json"
STATES = ("running", "failed", "complete")


@dataclass
class RunStatus:
    state: str
    step: int = 0
    total: int = 0
    checkpoint: str | None = None
    message: str | None = None

    @property
    def complete(self) -> bool:
        return self.state == "complete"

    def describe(self) -> str:
        """One line: what the run is and which weights its folder holds."""
        if self.complete:
            return f"finished {self.step} steps"
        kept = (
            f"its last checkpoint is {self.checkpoint}"
            if self.checkpoint
            else "no checkpoint was written, its weights are the initial ones"
        )
        if self.state == "failed":
            return f"failed at step {self.step} of {self.total} ({self.message}); {kept}"
        return (
            f"did not finish: step {self.step} of {self.total} when last heard of (still "
            f"training, or killed); {kept}"
        )


def write_status(run_dir: Path, status: RunStatus) -> None:
    atomic_write_text(run_dir / STATUS, json.dumps(asdict(status), indent=2))


def read_status(run_dir: Path) -> RunStatus:
    path = run_dir / STATUS
    if not path.is_file():
        return RunStatus("complete")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        status = RunStatus(**raw)
        if status.state not in STATES:
            raise ValueError(f"unknown state {status.state!r}")
    except (ValueError, TypeError) as exc:
        raise AnybindError(f"{path}: not a run status ({exc})") from None
    return status


def require_complete(run_dir: Path, *, allow_incomplete: bool = False) -> RunStatus:
    """The run's status; an error unless it is complete or `allow_incomplete`."""
    status = read_status(run_dir)
    if not status.complete and not allow_incomplete:
        raise AnybindError(
            f"{run_dir} {status.describe()}. Finish it with `anybind train CONFIG --out "
            f"{run_dir} --resume`, or look at it as it is with `anybind eval --allow-incomplete`"
        )
    return status
