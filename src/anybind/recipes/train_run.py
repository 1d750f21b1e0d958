"""What a training run holds between setup and finish, and what it says of itself: the `Run`,
its summary, its state in status.json and what a stopped run leaves behind."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from anybind.checkpoint import latest_checkpoint
from anybind.config import Config
from anybind.objectives import Objective
from anybind.recipes.data import Data
from anybind.recipes.distributed import ProcessGroup
from anybind.recipes.train_step import Aligner
from anybind.run_status import RunStatus, write_status
from anybind.space import Space

#: called after every step (and its checkpoint, if one is due) with the step number: a test hook
StepHook = Callable[[int], None]


@dataclass
class TrainSummary:
    steps: int
    epochs: float
    final_loss: float
    samples_per_s: float
    wall_s: float
    train_samples: int
    skipped_samples: int
    resumed_from: int | None


@dataclass
class Run:
    """Everything a training run holds between setup and finish."""

    config: Config
    out: Path
    group: ProcessGroup
    device: torch.device
    space: Space
    objective: Objective
    model: nn.Module  # the Aligner, DDP-wrapped under torchrun
    optimizer: torch.optim.Optimizer
    schedule: torch.optim.lr_scheduler.LambdaLR
    dataset: Data
    batch_size: int
    per_epoch: int
    total: int
    step: int = 0
    resumed_from: int | None = None
    skipped_at_load: int = 0
    skipped: int = 0  # this rank's samples skipped while training (checkpointed)
    first_skip: str | None = None  # why the first of them was
    base_fingerprint: str = ""  # an extended run: SHA-256 of its frozen base tensors
    losses: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def checkpoints(self) -> Path:
        return self.out / "checkpoints"

    @property
    def sharded(self) -> bool:
        """FSDP: the towers' parameters are sharded over the ranks."""
        return self.group.active and self.config.train.parallel == "fsdp"

    @property
    def aligner(self) -> Aligner:
        return getattr(self.model, "module", self.model)


def mark(run: Run, state: str, message: str | None = None) -> None:
    """Rank 0 records the run's state in status.json (see anybind.run_status)."""
    if run.group.main:
        last = latest_checkpoint(run.checkpoints)
        name = last.name if last is not None else None
        write_status(run.out, RunStatus(state, run.step, run.total, name, message))


def data_topology(run: Run) -> dict[str, int]:
    """What a streamed epoch's batches depend on besides (seed, step)."""
    return {"world": run.group.world, "workers": run.config.data.workers}


def kept_message(run: Run) -> str:
    """What a stopped run leaves behind, said as it is."""
    last = latest_checkpoint(run.checkpoints)
    if last is None:
        return (
            f"No checkpoint was written before step {run.step + 1}: {run.out} holds the "
            "initial weights only."
        )
    return f"The last checkpoint is {last.name} in {run.checkpoints} (continue with --resume)."
