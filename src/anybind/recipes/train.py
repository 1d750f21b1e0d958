"""Align modalities into one space: `anybind train CONFIG --out RUN_DIR`.

    anybind train configs/digits.yaml --out runs/digits optim.lr=2e-3
    anybind train configs/digits.yaml --out runs/digits --resume

One plain loop: batch → augment → embed → loss terms → backward → clip → step → log →
checkpoint. Every random draw of a step (augmentation, dropout) comes from the torch RNG seeded
with (seed, step), and the data order from (seed, epoch), so a resumed run replays exactly the
steps an uninterrupted run would have taken and ends with bit-identical weights on CPU.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import random
import signal
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from anybind.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from anybind.config import Config, load_config
from anybind.data.dataset import MultiModalDataset
from anybind.errors import AnybindError, ConfigError, TrainingError
from anybind.objectives import build_objective, group_ids
from anybind.objectives.grad_cache import grad_cache_step
from anybind.progress import progress_bar
from anybind.recipes.data import build_dataset
from anybind.recipes.multiprocess import (
    ProcessGroup,
    gather_for_replicated_loss,
    join_process_group,
    local_device,
    sync_gradients,
)
from anybind.space import Space, save_space
from anybind.space.io import CONFIG


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


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("CUDA is not available on this machine", key="train.device")
    return torch.device(name)


def autocast_context(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    use_bf16 = precision == "bf16" or (
        precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    if use_bf16:
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def warmup_cosine(warmup: int, total: int):
    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))

    return factor


def param_groups(space: Space, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW groups: no weight decay on biases, norms and the logit scale."""
    decay, no_decay = [], []
    for name, p in space.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("logit_scale") else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


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
    dataset: MultiModalDataset | None = None,
) -> TrainSummary:
    if not isinstance(config, Config):
        config = load_config(config, overrides)
    out = Path(out)
    group = join_process_group(resolve_device(config.train.device))
    if group.active and config.optim.micro_batches > 1:
        raise ConfigError(
            "optim.micro_batches > 1 cannot be combined with torchrun yet",
            key="optim.micro_batches",
        )
    progress = progress and group.main
    saved = out / CONFIG
    if resume and saved.is_file() and load_config(saved).model_dump() != config.model_dump():
        raise ConfigError("--resume needs the same config as the interrupted run", file=str(saved))
    if not resume and saved.is_file():
        raise AnybindError(
            f"{out} already holds a run: pass --resume to continue it, or choose another --out"
        )
    if group.active:
        dist.barrier()  # every rank has checked the folder before rank 0 writes into it
    started = time.perf_counter()
    seed = config.train.seed
    seed_everything(seed)
    device = resolve_device(local_device(config.train.device, group))

    space = Space(config)
    if dataset is None:
        dataset, report = build_dataset(
            config.data.train,
            config,
            space.modalities,
            skip_bad=config.data.skip_bad if skip_bad is None else skip_bad,
            progress=progress,
            description="loading training data",
        )
        skipped = report.skipped
    else:
        skipped = 0
    if not saved.is_file() and group.main:
        save_space(space, out)  # resolved config + initial weights: the folder is a run from now on

    n = len(dataset)
    batch_size = min(config.optim.batch_size, n)
    per_epoch = max(1, n // batch_size)
    total = config.optim.steps or per_epoch * (config.optim.epochs or 1)
    objective = build_objective(config)
    space.to(device)
    objective.to(device)
    optimizer = torch.optim.AdamW(
        param_groups(space, config.optim.weight_decay) + objective_param_groups(objective),
        lr=config.optim.lr,
        betas=config.optim.betas,
    )
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, warmup_cosine(config.optim.warmup_steps, total)
    )

    step, resumed_from = 0, None
    ckpt_root = out / "checkpoints"
    if resume and (last := latest_checkpoint(ckpt_root)) is not None:
        weights, state, meta = load_checkpoint(last)
        load_training_state(space, objective, weights)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["scheduler"])
        step = resumed_from = int(meta["step"])
    metrics = MetricsLog(out, start_step=step) if group.main else None

    kill_at = int(os.environ.get("ANYBIND_FAULT_KILL_AT_STEP", "0"))
    space.train()
    losses: list[float] = []
    seen, tick = 0, time.perf_counter()
    fields = "loss {task.fields[loss]:.4f}"
    with progress_bar("samples", disable=not progress, transient=False, fields=fields) as bar:
        task = bar.add_task(
            "training", total=total * batch_size, completed=step * batch_size, loss=float("nan")
        )
        while step < total:
            epoch, within = divmod(step, per_epoch)
            order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
            indices = order[within * batch_size : (within + 1) * batch_size].tolist()
            torch.manual_seed(seed * 1_000_003 + step)
            batch = to_device(augment(dataset.batch(indices), space, config), device)
            optimizer.zero_grad(set_to_none=True)
            loss, terms = forward_backward(
                space, objective, batch, config, device, step, ckpt_root, group
            )
            if config.optim.grad_clip:
                torch.nn.utils.clip_grad_norm_(space.parameters(), config.optim.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            seen += len(indices)
            losses.append(loss.item())
            bar.update(task, advance=len(indices), loss=losses[-1])
            if metrics is not None and (step % config.train.log_every == 0 or step == total):
                now = time.perf_counter()
                metrics.write(
                    step,
                    {
                        "epoch": step / per_epoch,
                        "loss": losses[-1],
                        **{k: v.item() for k, v in terms.items()},
                        "lr": schedule.get_last_lr()[0],
                        "temperature": 1.0 / space.logit_scale().item(),
                        "samples_per_s": seen / max(now - tick, 1e-9),
                    },
                )
                seen, tick = 0, now
            if step == kill_at:  # fault injection for the resume tests: die like a SIGKILL would
                os.kill(os.getpid(), signal.SIGKILL)
            if group.main and (step % config.train.checkpoint_every == 0 or step == total):
                save_checkpoint(
                    ckpt_root,
                    step,
                    training_state(space, objective),
                    {"optimizer": optimizer.state_dict(), "scheduler": schedule.state_dict()},
                    {"epoch": step / per_epoch},
                    keep=config.train.keep_checkpoints,
                )
    space.eval()
    if metrics is not None:
        metrics.close()
        save_space(space, out)
    wall = time.perf_counter() - started
    summary = TrainSummary(
        steps=step,
        epochs=step / per_epoch,
        final_loss=float(np.mean(losses[-10:])) if losses else float("nan"),
        samples_per_s=(len(losses) * batch_size) / max(wall, 1e-9),
        wall_s=wall,
        train_samples=n,
        skipped_samples=skipped,
        resumed_from=resumed_from,
    )
    if group.main:
        (out / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
    if group.active:
        dist.barrier()  # the run folder is complete on every rank's return
    group.close()
    return summary


def forward_backward(
    space: Space,
    objective: torch.nn.Module,
    batch: dict[str, Any],
    config: Config,
    device: torch.device,
    step: int,
    ckpt_root: Path,
    group: ProcessGroup | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss terms of one batch and their gradients in `.grad`. With optim.micro_batches = k > 1
    the batch is embedded k rows-chunks at a time (GradCache): same loss over all in-batch
    negatives, activation memory of one chunk."""
    captions = masked_captions(batch)
    groups = group_ids(batch["label"], captions, config.objective.positives)
    groups = groups.to(device) if groups is not None else None
    masks = {name: batch[f"{name}_mask"] for name in space.towers if name in batch}
    found: dict[str, torch.Tensor] = {}

    def loss_of(features: dict[str, torch.Tensor]) -> torch.Tensor:
        terms = objective(features, {k: masks[k] for k in features}, groups, space.logit_scale())
        if not terms:
            raise TrainingError(
                f"step {step}: no modality pair is present in the batch; "
                "check objective.pairs against the data"
            )
        loss = torch.stack([v.float() for v in terms.values()]).sum()
        if not torch.isfinite(loss):
            raise TrainingError(
                f"step {step}: the loss is {loss.item()} (terms: "
                f"{ {k: v.item() for k, v in terms.items()} }); stopped. The last good "
                f"checkpoint is kept in {ckpt_root}. Lower optim.lr or check the data."
            )
        found.update(terms)
        return loss

    k = config.optim.micro_batches
    group = group or ProcessGroup()
    with autocast_context(config.optim.precision, device):
        if group.active:  # this rank's rows, gathered: the same loss over the whole batch
            rows = group.rows(len(batch["id"]))
            features = {
                name: gather_for_replicated_loss(embed_rows(space, batch, name, rows))
                for name in masks
            }
            loss = loss_of({n: f for n, f in features.items() if bool(masks[n].any())})
        elif k == 1:
            loss = loss_of(space(batch))
        else:
            rows = torch.arange(len(batch["id"]))
            encoders = {name: functools.partial(embed_rows, space, batch, name) for name in masks}
            loss = grad_cache_step(encoders, {name: rows for name in masks}, loss_of, k)
    if k == 1:
        loss.backward()
    if group.active:
        sync_gradients([p for p in space.towers.parameters() if p.requires_grad], group)
    return loss.detach(), {name: v.detach() for name, v in found.items()}


def embed_rows(space: Space, batch: dict[str, Any], name: str, rows: torch.Tensor) -> torch.Tensor:
    """Embeddings (len(rows), D) of one modality for some rows of a batch; zeros where absent."""
    data = batch[name]
    sub = {
        name: [data[i] for i in rows.tolist()] if isinstance(data, list) else data[rows],
        f"{name}_mask": batch[f"{name}_mask"][rows],
    }
    out = space(sub)
    if name in out:
        return out[name]
    return torch.zeros(len(rows), space.config.space.dim, device=batch[f"{name}_mask"].device)


def objective_param_groups(objective: torch.nn.Module) -> list[dict[str, Any]]:
    """The objective's own learnable parameters (scales, biases): no weight decay."""
    params = [p for p in objective.parameters() if p.requires_grad]
    return [{"params": params, "weight_decay": 0.0}] if params else []


def training_state(space: Space, objective: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        **space.persistent_state(),
        **{f"objective.{k}": v for k, v in objective.state_dict().items()},
    }


def load_training_state(
    space: Space, objective: torch.nn.Module, weights: dict[str, torch.Tensor]
) -> None:
    objective.load_state_dict(
        {k.removeprefix("objective."): v for k, v in weights.items() if k.startswith("objective.")}
    )
    space.load_persistent_state(
        {k: v for k, v in weights.items() if not k.startswith("objective.")}
    )


def augment(batch: dict[str, Any], space: Space, config: Config) -> dict[str, Any]:
    for name, tower in space.towers.items():
        if name in batch and config.modalities[name].augment:
            batch[name] = tower.modality.augment(batch[name])
    return batch


def masked_captions(batch: dict[str, Any]) -> list[str] | None:
    if "text" not in batch:
        return None
    return [
        t if present else None
        for t, present in zip(batch["text"], batch["text_mask"].tolist(), strict=True)
    ]


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


class MetricsLog:
    """metrics.jsonl (one JSON object per logged step) + TensorBoard events, resume-aware:
    lines past the resumed step, written by the interrupted run, are dropped."""

    def __init__(self, out: Path, start_step: int):
        self.path = out / "metrics.jsonl"
        if self.path.exists():
            kept = [
                line
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line)["step"] <= start_step
            ]
            self.path.write_text("".join(line + "\n" for line in kept))
        self.file = self.path.open("a")
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(str(out / "tensorboard"), purge_step=start_step or None)

    def write(self, step: int, values: dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        for k, v in values.items():
            self.tb.add_scalar(f"train/{k}", v, step)

    def close(self) -> None:
        self.file.close()
        self.tb.close()
