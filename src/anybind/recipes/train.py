"""Align modalities into one space: `anybind train CONFIG --out RUN_DIR`.

    anybind train configs/digits.yaml --out runs/digits optim.lr=2e-3
    anybind train configs/digits.yaml --out runs/digits --resume
    torchrun --nproc_per_node=2 -m anybind train configs/digits.yaml --out runs/digits

Three pieces, read top to bottom: `setup` (train_setup.py: run folder, process group, space,
data, optimiser, restore), `loop` (batch → augment → embed → loss → backward → clip → step →
log → checkpoint; train_checkpoint.py writes and restores them) and `finish` (final weights
and summary). Batches come from a DataLoader (`data.workers` processes decode them when the
data is lazy); the batch order is a function of (seed, step), and every random draw of a step
(augmentation, dropout) comes from the torch RNG seeded with (seed, step, rank), so a resumed
run replays exactly the steps an uninterrupted run would have taken and ends with
bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import gc
import json
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from anybind.config import Config, load_config
from anybind.data.dataset import MultiModalDataset
from anybind.data.loader import LoaderSettings, StepBatchSampler, batches, make_loader
from anybind.data.shards.stream import ShardSet, ShardStream, stream_loader
from anybind.distributed_checkpoint import full_state
from anybind.errors import DataError, TrainingError, storage_message
from anybind.progress import progress_bar
from anybind.recipes.data import Data
from anybind.recipes.fsdp import clip_gradients
from anybind.recipes.run_folder import MetricsLog, check_run_folder, write_summary
from anybind.recipes.train_checkpoint import checkpoint
from anybind.recipes.train_run import Run, StepHook, TrainSummary, kept_message, mark
from anybind.recipes.train_setup import setup
from anybind.recipes.train_step import augment, forward_backward, to_device
from anybind.run_status import read_status
from anybind.space import save_space
from anybind.space.base_run import base_fingerprint
from anybind.space.io import CONFIG
from anybind.threads import one_blas_thread

__all__ = ["StepHook", "TrainSummary", "train"]


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
