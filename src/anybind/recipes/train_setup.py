"""Setting up a training run: process group, run folder, space, data, objective, the DDP or
FSDP wrapping, optimiser and schedule, then the restore of a resumed run."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from anybind.config import Config
from anybind.data.dataset import LoadReport
from anybind.errors import ConfigError, DataError
from anybind.objectives import build_objective
from anybind.recipes.data import Data, build_dataset
from anybind.recipes.distributed import ProcessGroup, join_process_group, local_device, parallelize
from anybind.recipes.optim import build_optimizer
from anybind.recipes.predictor_init import init_anchor_predictor
from anybind.recipes.run_folder import check_run_folder, write_environment
from anybind.recipes.train_checkpoint import restore
from anybind.recipes.train_run import Run, mark
from anybind.recipes.train_step import Aligner
from anybind.run_status import RunStatus, write_status
from anybind.space import Space, save_space
from anybind.space.base_run import base_fingerprint
from anybind.space.io import CONFIG, attach_base, init_from_base


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine", key="train.device")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def setup(
    config: Config,
    out: Path,
    *,
    resume: bool,
    skip_bad: bool,
    progress: bool,
    data: Data | None,
) -> Run:
    group = join_process_group(resolve_device(config.train.device), config.train.timeout_s)
    check_run_folder(out, config, resume)
    group.barrier()  # every rank has checked the folder before rank 0 writes into it
    seed_everything(config.train.seed)
    device = resolve_device(local_device(config.train.device, group))
    space = Space(config)
    attach_base(space, out)  # an extended run: its frozen base towers
    init_from_base(space)  # and new towers that start from a base encoder
    init_anchor_predictor(space)
    base_before = base_fingerprint(space)
    skipped = 0
    if data is None:
        data, skipped = training_data(config, space, group, skip_bad=skip_bad, progress=progress)
    if not (out / CONFIG).is_file() and group.main:
        # resolved config + initial weights: the folder is a run from now on, not yet a usable one
        write_status(out, RunStatus("running"))
        save_space(space, out)
        write_environment(out)
    n = len(data)
    batch_size = batch_size_for(config, n, group.world)
    per_epoch = max(1, n // batch_size)
    total = config.optim.steps or per_epoch * (config.optim.epochs or 1)
    objective = build_objective(config)
    space.to(device)
    objective.to(device)
    if config.train.compile:
        compile_towers(space)
    # DDP wraps the towers, FSDP replaces their parameters by shards: before the optimiser
    model = parallelize(Aligner(space, objective, config), device, group, config.train.parallel)
    optimizer, schedule = build_optimizer(space, objective, config, total)
    run = Run(
        config, out, group, device, space, objective, model, optimizer, schedule, data,
        batch_size, per_epoch, total, skipped_at_load=skipped, base_fingerprint=base_before,
    )  # fmt: skip
    if resume:
        restore(run)
    mark(run, "running")
    return run


def training_data(
    config: Config, space: Space, group: ProcessGroup, *, skip_bad: bool, progress: bool
) -> tuple[Data, int]:
    """The training sources (in memory, lazy or streamed from shards) and how many of their
    samples were skipped as unreadable while they were read."""
    data, report = build_dataset(
        config.data.train,
        config,
        space.modalities,
        skip_bad=skip_bad,
        progress=progress and group.main,
        description="loading training data",
    )
    require_enough(len(data), report)
    return data, report.skipped


def batch_size_for(config: Config, n: int, world: int) -> int:
    """The global batch (at most the data): refused when the ranks or the micro-batches cannot
    share it."""
    batch_size = min(config.optim.batch_size, n)
    if batch_size < world:
        raise ConfigError(
            f"a batch of {batch_size} cannot be shared by {world} ranks", key="optim.batch_size"
        )
    if batch_size // world < config.optim.micro_batches:
        raise ConfigError(
            f"{batch_size // world} rows per rank cannot be split into "
            f"{config.optim.micro_batches} micro-batches",
            key="optim.micro_batches",
        )
    return batch_size


def require_enough(n: int, report: LoadReport) -> None:
    """Contrastive training compares samples: fewer than two is an error that says how many
    were skipped as unreadable, and why the first was."""
    if n >= 2:
        return
    message = f"{n} usable training sample{'s' if n != 1 else ''}; training needs at least 2"
    if report.skipped:
        message += f" ({report.skipped} unreadable ones were skipped; the first: "
        message += f"{report.reasons[0]})" if report.reasons else "see above)"
    raise DataError(message)


def compile_towers(space: Space) -> None:
    """torch.compile each trainable encoder in place (`nn.Module.compile`: same state-dict
    keys, so checkpoints and run folders do not change)."""
    for tower in space.towers.values():
        if any(p.requires_grad for p in tower.encoder.parameters()):
            tower.encoder.compile()
