"""Data-parallel training under `torchrun`: every rank embeds its share of each batch, the loss
is computed over the whole batch, and the gradients are exactly those of one process.

    torchrun --nproc_per_node=2 --no-python anybind train my.yaml --out runs/mine

How a step is shared, and why it is exact:
- every rank draws the same global batch (the epoch order and the per-step seed are shared) and
  applies the same augmentation to it; rank r embeds rows `tensor_split(B, world)[r]` — the same
  row chunks as GradCache's `optim.micro_batches = world` in one process;
- the embeddings are all-gathered (`gather_for_replicated_loss`) and every rank computes the
  same loss over all B rows, so any objective (InfoNCE, SigLIP, Symile, CWCL) works unchanged;
  the backward of the gather hands each rank the gradient of its own rows, which — the loss being
  identical on every rank — is already the full-batch gradient (no reduction needed there);
- `sync_gradients` sums the encoder/projection gradients over ranks (each rank holds the
  contribution of its own rows) and leaves the loss-only parameters (temperature, objective
  scales/biases) alone, since every rank computed their full gradient itself.
BatchNorm sees per-rank statistics, as under DDP without SyncBatchNorm. Only rank 0 writes files.
The loss itself is replicated (O(B²) on every rank); the encoders, the usual bottleneck, are not.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor, nn

from anybind.objectives.distributed import _all_gather_varlen, _gather_sizes


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

    def rows(self, batch_size: int) -> Tensor:
        """This rank's rows of a batch (contiguous chunk; may be empty)."""
        return torch.arange(batch_size).tensor_split(self.world)[self.rank]

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def join_process_group(device: torch.device) -> ProcessGroup:
    """The torchrun process group (initialised here if needed), or a single-process one."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return ProcessGroup()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        owns = True
    return ProcessGroup(dist.get_rank(), dist.get_world_size(), owns)


def local_device(name: str, group: ProcessGroup) -> str:
    """Under torchrun each rank takes its own GPU (LOCAL_RANK)."""
    if group.active and name.startswith("cuda") and ":" not in name:
        return f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
    return name


class _GatherForReplicatedLoss(torch.autograd.Function):
    """Forward: all-gather rows in rank order. Backward: keep this rank's rows of the incoming
    gradient. Valid because every rank computes the same loss over all rows, so its incoming
    gradient is already the full one (compare `_GatherWithGrad`, whose per-rank losses differ
    and must be summed)."""

    @staticmethod
    def forward(ctx, x: Tensor, sizes: list[int], offset: int) -> Tensor:  # type: ignore[override]
        ctx.offset, ctx.rows = offset, x.shape[0]
        return _all_gather_varlen(x, sizes)

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        return grad[ctx.offset : ctx.offset + ctx.rows], None, None


def gather_for_replicated_loss(x: Tensor) -> Tensor:
    if not (dist.is_available() and dist.is_initialized()):
        return x
    sizes = _gather_sizes(x.shape[0], x.device)
    offset = sum(sizes[: dist.get_rank()])
    return _GatherForReplicatedLoss.apply(x, sizes, offset)


def sync_gradients(row_params: list[nn.Parameter], group: ProcessGroup) -> None:
    """Sum the gradients of the parameters that act on rows (encoders, projections) over ranks,
    in one flat all-reduce; a parameter without a gradient on some rank contributes zeros."""
    if not group.active or not row_params:
        return
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).flatten() for p in row_params]
    )
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    start = 0
    for p in row_params:
        n = p.numel()
        p.grad = flat[start : start + n].view_as(p).clone()
        start += n
