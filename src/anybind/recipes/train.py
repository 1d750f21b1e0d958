"""Align modalities into one space: `anybind train CONFIG --out RUN_DIR`.

    anybind train configs/digits.yaml --out runs/digits optim.lr=2e-3
    anybind train configs/digits.yaml --out runs/digits --resume
    torchrun --nproc_per_node=2 -m anybind train configs/digits.yaml --out runs/digits

Three pieces, read top to bottom: `setup` (run folder, process group, space, data, optimiser,
restore), `loop` (batch → augment → embed → loss → backward → clip → step → log → checkpoint)
and `finish` (final weights and summary). Batches come from a DataLoader (`data.workers`
processes decode them when the data is lazy); the batch order is a function of (seed, step), and
every random draw of a step (augmentation, dropout) comes from the torch RNG seeded with
(seed, step, rank), so a resumed run replays exactly the steps an uninterrupted run would have
taken and ends with bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import gc
import json
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from anybind.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from anybind.config import Config, load_config
from anybind.data.dataset import LoadReport, MultiModalDataset
from anybind.data.loader import LoaderSettings, StepBatchSampler, batches, make_loader
from anybind.data.shards.stream import ShardSet, ShardStream, stream_loader
from anybind.distributed_checkpoint import (
    full_state,
    is_sharded,
    load_sharded_checkpoint,
    save_sharded_checkpoint,
)
from anybind.errors import ConfigError, DataError, TrainingError, storage_message
from anybind.objectives import Objective, build_objective
from anybind.progress import progress_bar
from anybind.recipes.data import Data, build_dataset
from anybind.recipes.distributed import (
    ProcessGroup,
    join_process_group,
    local_device,
    parallelize,
)
from anybind.recipes.fsdp import broadcast_buffers, clip_gradients
from anybind.recipes.optim import build_optimizer
from anybind.recipes.predictor_init import init_anchor_predictor
from anybind.recipes.run_folder import (
    MetricsLog,
    check_run_folder,
    load_training_state,
    training_state,
    write_environment,
    write_summary,
)
from anybind.recipes.train_step import Aligner, augment, forward_backward, to_device
from anybind.run_status import RunStatus, read_status, write_status
from anybind.space import Space, save_space
from anybind.space.base_run import base_fingerprint
from anybind.space.io import CONFIG, attach_base, init_from_base
from anybind.threads import one_blas_thread

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


def train(
    config: Config | str | Path,
    out: str | Path,
    *,
    overrides: list[str] | None = None,
    resume: bool = False,
    skip_bad: bool | None = None,
    progress: bool = True,
    dataset: Data | None = None,
    after_step: StepHook | None = None,
) -> TrainSummary:
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    finished = finished_summary(Path(out), config) if resume else None
    if finished is not None:
        return finished  # --resume on a finished run leaves it alone
    skip = config.data.skip_bad if skip_bad is None else skip_bad
    run = setup(config, Path(out), resume=resume, skip_bad=skip, progress=progress, data=dataset)
    try:
        loop(run, skip_bad=skip, progress=progress and run.group.main, after_step=after_step)
    except (TrainingError, DataError, OSError) as exc:
        reason = storage_message(exc) if isinstance(exc, OSError) else str(exc)
        if run.skipped:  # what --skip-bad left out may be why a batch has nothing to score
            reason += f" ({run.skipped} unreadable samples were skipped; the first: "
            reason += f"{run.first_skip})"
        # the disk that failed may not take status.json either: then "running" stays
        with contextlib.suppress(OSError):
            mark(run, "failed", message=reason)
        release(run)
        raise TrainingError(f"{reason} — {kept_message(run)}") from exc
    return finish(run)


def finished_summary(out: Path, config: Config) -> TrainSummary | None:
    """The summary of a run that already finished (its config must be this one), else None."""
    if not (out / CONFIG).is_file() or not read_status(out).complete:
        return None
    check_run_folder(out, config, resume=True)
    try:
        saved = json.loads((out / "summary.json").read_text(encoding="utf-8"))
        return TrainSummary(**{**saved, "resumed_from": saved["steps"]})
    except (OSError, ValueError, TypeError, KeyError) as exc:
        message = f"{out}: the run is complete but its summary.json is not ({exc})"
        raise TrainingError(message) from None


def mark(run: Run, state: str, message: str | None = None) -> None:
    """Rank 0 records the run's state in status.json (see anybind.run_status)."""
    if run.group.main:
        last = latest_checkpoint(run.checkpoints)
        name = last.name if last is not None else None
        write_status(run.out, RunStatus(state, run.step, run.total, name, message))


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
        data, report = build_dataset(
            config.data.train,
            config,
            space.modalities,
            skip_bad=skip_bad,
            progress=progress and group.main,
            description="loading training data",
        )
        skipped = report.skipped
        require_enough(len(data), report)
    if not (out / CONFIG).is_file() and group.main:
        # resolved config + initial weights: the folder is a run from now on, not yet a usable one
        write_status(out, RunStatus("running"))
        save_space(space, out)
        write_environment(out)
    n = len(data)
    batch_size = min(config.optim.batch_size, n)
    if batch_size < group.world:
        raise ConfigError(
            f"a batch of {batch_size} cannot be shared by {group.world} ranks",
            key="optim.batch_size",
        )
    if batch_size // group.world < config.optim.micro_batches:
        raise ConfigError(
            f"{batch_size // group.world} rows per rank cannot be split into "
            f"{config.optim.micro_batches} micro-batches",
            key="optim.micro_batches",
        )
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


def restore(run: Run) -> None:
    """Weights, optimiser, schedule, step and skip count of the last checkpoint, if any."""
    last = latest_checkpoint(run.checkpoints)
    if last is None:
        return
    if is_sharded(last):  # DCP reshards: it loads under FSDP, DDP or one process alike
        meta = load_sharded_checkpoint(last, run.aligner, run.optimizer)
        run.schedule.load_state_dict(meta["scheduler"])
    elif run.sharded:
        raise ConfigError(
            f"{last} holds whole weights (written with train.parallel: ddp or one process); "
            "resume it with train.parallel: ddp",
            key="train.parallel",
        )
    else:
        weights, state, meta = load_checkpoint(last)
        load_training_state(run.space, run.objective, weights)
        run.optimizer.load_state_dict(state["optimizer"])
        run.schedule.load_state_dict(state["scheduler"])
    saved = meta.get("data", data_topology(run))
    if isinstance(run.dataset, ShardSet) and saved != data_topology(run):
        raise ConfigError(
            f"the run streamed shards with {saved} (ranks, data.workers); a streamed epoch "
            f"resumes exactly only with the same, not {data_topology(run)}",
            key="data.workers",
        )
    run.step = run.resumed_from = int(meta["step"])
    run.skipped = int(meta.get("skipped", {}).get(str(run.group.rank), 0))


def loop(run: Run, *, skip_bad: bool, progress: bool, after_step: StepHook | None) -> None:
    config, group = run.config, run.group
    loader = training_loader(run)
    metrics = MetricsLog(run.out, start_step=run.step) if group.main else None
    seen, tick = 0, time.perf_counter()
    fields = "loss {task.fields[loss]:.4f} skipped {task.fields[skipped]}"
    bar_context = progress_bar("samples", disable=not progress, transient=False, fields=fields)
    with one_blas_thread(), bar_context as bar:
        task = bar.add_task(
            "training", total=run.total * run.batch_size, completed=run.step * run.batch_size,
            loss=float("nan"), skipped=run.skipped,
        )  # fmt: skip
        run.space.train()
        for batch in batches(loader):
            count_bad(run, batch["bad"], skip_bad)
            torch.manual_seed(config.train.seed * 1_000_003 + run.step + group.rank * 7_919_993)
            batch = to_device(augment(batch, run.space, config), run.device)
            run.optimizer.zero_grad(set_to_none=True)
            loss, terms = forward_backward(run.model, batch, run.step, run.device)
            if config.optim.grad_clip:
                clip_gradients(list(run.space.parameters()), config.optim.grad_clip)
            run.optimizer.step()
            run.schedule.step()
            run.step += 1
            seen += run.batch_size
            run.losses.append(loss.item())
            bar.update(task, advance=run.batch_size, loss=run.losses[-1], skipped=run.skipped)
            if run.step % config.train.log_every == 0 or run.step == run.total:
                now = time.perf_counter()
                log_step(run, metrics, terms, seen / max(now - tick, 1e-9))
                seen, tick = 0, now
            if run.step % config.train.checkpoint_every == 0 or run.step == run.total:
                checkpoint(run)
            if after_step is not None:
                after_step(run.step)
    if metrics is not None:
        metrics.close()


def training_loader(run: Run) -> DataLoader:
    """Batches of steps run.step … total-1 for this rank: from a map-style dataset through
    `StepBatchSampler`, or streamed from shards."""
    config, group = run.config, run.group
    settings = LoaderSettings.from_config(config.data, run.device)
    keep = list(run.space.towers) if group.active else []
    if isinstance(run.dataset, ShardSet):
        stream = ShardStream(
            run.dataset, batch_size=run.batch_size, seed=config.train.seed, start=run.step,
            stop=run.total, rank=group.rank, world=group.world, keep=keep,
        )  # fmt: skip
        return stream_loader(stream, settings)
    sampler = StepBatchSampler(
        len(run.dataset), run.batch_size, config.train.seed, run.step, run.total,
        group.rank, group.world,
    )  # fmt: skip
    if isinstance(run.dataset, MultiModalDataset):  # in memory: nothing left to decode
        settings = LoaderSettings()
    return make_loader(run.dataset, sampler, settings, keep=keep)


def data_topology(run: Run) -> dict[str, int]:
    """What a streamed epoch's batches depend on besides (seed, step)."""
    return {"world": run.group.world, "workers": run.config.data.workers}


def count_bad(run: Run, bad: list, skip_bad: bool) -> None:
    """A sample that failed to decode stops the run with its file and row, or is counted."""
    if bad and not skip_bad:
        raise bad[0].error()
    if bad and run.first_skip is None:
        run.first_skip = str(bad[0].error())
    run.skipped += len(bad)


def log_step(run: Run, metrics: MetricsLog | None, terms: dict, samples_per_s: float) -> None:
    skipped = int(run.group.sum(run.skipped))  # a collective: every rank logs the same steps
    if metrics is None:
        return
    metrics.write(
        run.step,
        {
            "epoch": run.step / run.per_epoch,
            "loss": run.losses[-1],
            **{k: v.item() for k, v in terms.items()},
            "lr": run.schedule.get_last_lr()[0],
            "temperature": 1.0 / run.space.logit_scale().item(),
            "samples_per_s": samples_per_s,
            "skipped": skipped + run.skipped_at_load,
        },
    )


def checkpoint(run: Run) -> None:
    """Rank 0 writes the checkpoint (under FSDP every rank writes its shards); every rank's
    skip count travels with it."""
    counts = run.group.gather(run.skipped)
    meta = {
        "epoch": run.step / run.per_epoch,
        "skipped": {str(r): int(c) for r, c in enumerate(counts)},
        "data": data_topology(run),
    }
    keep = run.config.train.keep_checkpoints
    if run.sharded:
        broadcast_buffers(run.aligner)
        meta["scheduler"] = run.schedule.state_dict()
        save_sharded_checkpoint(run.checkpoints, run.step, run.aligner, run.optimizer, meta, keep)
    elif run.group.main:
        save_checkpoint(
            run.checkpoints,
            run.step,
            training_state(run.space, run.objective),
            {"optimizer": run.optimizer.state_dict(), "scheduler": run.schedule.state_dict()},
            meta,
            keep=keep,
        )
    mark(run, "running")


def kept_message(run: Run) -> str:
    """What a stopped run leaves behind, said as it is."""
    last = latest_checkpoint(run.checkpoints)
    if last is None:
        return (
            f"No checkpoint was written before step {run.step + 1}: {run.out} holds the "
            "initial weights only."
        )
    return f"The last checkpoint is {last.name} in {run.checkpoints} (continue with --resume)."


def finish(run: Run) -> TrainSummary:
    run.space.eval()
    if base_fingerprint(run.space) != run.base_fingerprint:
        mark(run, "failed", message="the base run's tensors changed while extending it")
        raise TrainingError(f"{run.out}: the base run's tensors changed while extending it")
    skipped = int(run.group.sum(run.skipped)) + run.skipped_at_load
    wall = time.perf_counter() - run.started
    trained = run.step - (run.resumed_from or 0)
    summary = TrainSummary(
        steps=run.step,
        epochs=run.step / run.per_epoch,
        final_loss=float(np.mean(run.losses[-10:])) if run.losses else float("nan"),
        samples_per_s=(trained * run.batch_size) / max(wall, 1e-9),
        wall_s=wall,
        train_samples=len(run.dataset),
        skipped_samples=skipped,
        resumed_from=run.resumed_from,
    )
    whole = full_state(run.aligner) if run.sharded else None  # a collective
    if run.group.main:
        space_state = None
        if whole is not None:
            space_state = {k.removeprefix("space."): v for k, v in whole.items()
                           if k.startswith("space.")}  # fmt: skip
        save_space(run.space, run.out, state=space_state)
        write_summary(run.out, asdict(summary))
    mark(run, "complete")
    run.group.barrier()  # the run folder is complete on every rank's return
    release(run)
    return summary


def release(run: Run) -> None:
    """Drop the DistributedDataParallel wrapper, then the process group: a DDP reducer still
    alive when the group is destroyed can leave a rank waiting at exit."""
    run.model = getattr(run.model, "module", run.model)
    gc.collect()
    run.group.close()
