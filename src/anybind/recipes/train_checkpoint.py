"""A training run's checkpoints: `checkpoint` writes one (whole weights from rank 0, or every
rank's shards under FSDP, through `torch.distributed.checkpoint`), `restore` takes a resumed run
back to the last one: weights, optimiser, schedule, step and skip counts."""

from __future__ import annotations

from anybind.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from anybind.data.shards.stream import ShardSet
from anybind.distributed_checkpoint import (
    is_sharded,
    load_sharded_checkpoint,
    save_sharded_checkpoint,
)
from anybind.errors import ConfigError
from anybind.recipes.fsdp import broadcast_buffers
from anybind.recipes.run_folder import load_training_state, training_state
from anybind.recipes.train_run import Run, data_topology, mark


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
