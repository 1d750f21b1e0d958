"""Data-parallel training under `torchrun`, on torch's own engine.

    torchrun --nproc_per_node=2 -m anybind train my.yaml --out runs/mine

One design: every rank reads its own rows of each global batch (`StepBatchSampler`), embeds
them, and all-gathers the embeddings of every rank *with gradient*
(`anybind.objectives.distributed.gather_with_grad`, whose backward sums over ranks). Every rank
then computes the objective over the whole global batch, so every objective (InfoNCE, SigLIP,
Symile, CWCL) is exact with no change. Why the gradients are exact: the loss L is the same on
every rank; the sum-reducing backward of the gather hands rank r's rows W·∂L/∂x_r, so rank r's
encoder gradient is W times its rows' share, and `DistributedDataParallel`'s average over ranks
makes it the full-batch gradient; the loss-only parameters (temperature, objective scales) get
the full ∂L/∂θ on every rank, which the average leaves as it is. Symile, CWCL and tiled SigLIP
are computed whole on every rank (O(B²) each); InfoNCE and dense SigLIP take open_clip's local
form instead (`Aligner.local_loss`: each rank scores its own rows against all, O(B²/W), and
returns W × its share, which the same average turns into the full-batch gradient). The
encoders' work, the usual cost, is split over the ranks. BatchNorm sees per-rank
statistics unless converted to SyncBatchNorm. Only rank 0 writes files. `train.parallel: fsdp`
shards the towers instead of replicating them, with the same gathers and the same loss
(`anybind.recipes.fsdp`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from anybind.recipes.fsdp import shard_aligner
from anybind.recipes.train_step import Aligner


@dataclass
class ProcessGroup:
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def gather(self, value: float) -> list[float]:
        """A number from every rank, in rank order (every rank must call it)."""
        if not self.active:
            return [value]
        t = torch.tensor([value], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.cuda()
        parts = [torch.zeros_like(t) for _ in range(self.world)]
        dist.all_gather(parts, t)
        return [float(p.item()) for p in parts]

    def sum(self, value: float) -> float:
        """The sum of a number over ranks (every rank must call it)."""
        return sum(self.gather(value))

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def join_process_group(device: torch.device, timeout_s: float = 1800.0) -> ProcessGroup:
    """The torchrun process group (initialised here if needed), or a single-process one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(
            backend="nccl" if device.type == "cuda" else "gloo",
            timeout=timedelta(seconds=timeout_s),
        )
        owns = True
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), owns)


def local_device(name: str, group: ProcessGroup) -> str:
    """Under torchrun each rank takes its own GPU (LOCAL_RANK)."""
    if group.active and name.startswith("cuda") and ":" not in name:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return name


def parallelize(
    aligner: Aligner, device: torch.device, group: ProcessGroup, mode: str = "ddp"
) -> nn.Module:
    """`aligner` for several ranks: wrapped in DistributedDataParallel (`ddp`), or with its
    towers sharded in place by FSDP2 (`fsdp`, see `anybind.recipes.fsdp`); itself in one
    process.

    `find_unused_parameters`: a tower whose modality is absent from a rank's rows in a step is
    not run there, and its parameters must still join that step's gradient average.
    """
    if not group.active:
        return aligner
    if mode == "fsdp":
        return shard_aligner(aligner)
    return DistributedDataParallel(
        aligner,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
    )
