"""`train.parallel: fsdp`: FSDP2 (`torch.distributed.fsdp.fully_shard`) for towers too large
to replicate on every GPU.

What is sharded. Every trainable tower is sharded per block (each element of the tower's
`nn.ModuleList`s: the layers of a transformer) and then as a whole (its remaining parameters:
embeddings, stem, projection). Frozen parameters are left out of the shards (`ignored_params`):
they need no gradient reduction, and every rank keeps its copy. The few parameters of the loss
itself (the logit scale, the objective's per-pair scales and biases) are 0-d, which FSDP2 cannot
shard; they stay whole on every rank and their gradients are averaged by one all-reduce after the
backward (`average_replicated_grads`), which is all DDP would do for them. Buffers (BatchNorm
statistics) are each rank's own; rank 0's are broadcast before a checkpoint, and kept.

Why every rank runs every tower. FSDP2 all-gathers a block's parameters when the block runs and
reduce-scatters its gradients after its backward: both are collectives, so every rank must run
the same sharded modules in the same order. A rank whose rows hold no sample of a modality runs
that tower on the placeholder rows and multiplies the result by zero (`Aligner.every_tower`).

Checkpoints are `torch.distributed.checkpoint` folders: each rank writes its shards of the
weights and the optimiser state, and any number of ranks can read them back (DCP reshards). The
run folder's final `model.safetensors` is the full state, gathered on rank 0.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.fsdp import fully_shard
from torch.distributed.tensor import DTensor

if TYPE_CHECKING:
    from anybind.recipes.train_step import Aligner


def shard_aligner(aligner: Aligner) -> Aligner:
    """`aligner` with its trainable towers sharded in place over the default process group."""
    for tower in aligner.space.towers.values():
        if not any(p.requires_grad for p in tower.parameters()):
            continue  # a frozen tower computes the same thing on every rank, with no gradient
        frozen = {p for p in tower.parameters() if not p.requires_grad}
        for blocks in [m for m in tower.modules() if isinstance(m, nn.ModuleList)]:
            for block in blocks:
                if any(p.requires_grad for p in block.parameters()):
                    fully_shard(block, ignored_params=frozen & set(block.parameters()))
        fully_shard(tower, ignored_params=frozen)
    aligner.every_tower = True
    aligner.replicated = [
        p for p in aligner.parameters() if p.requires_grad and not isinstance(p, DTensor)
    ]
    return aligner


def broadcast_buffers(module: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm statistics) on every rank, before a checkpoint: DCP writes
    one copy of a tensor that is not sharded, from whichever rank it picks, and a resumed run
    must continue from rank 0's, as the uninterrupted one does (rank 0's are the ones the run
    folder keeps, as under DDP)."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def average_replicated_grads(params: list[nn.Parameter]) -> None:
    """The mean over ranks of the gradients of the parameters FSDP does not hold (one
    all-reduce; gloo has no AVG, so a sum divided by the world size). Every rank runs the same
    graph, so the same parameters have a gradient on every rank."""
    with_grad = [p for p in params if p.grad is not None]
    if not with_grad:
        return
    flat = torch.cat([p.grad.reshape(-1) for p in with_grad])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for p, g in zip(with_grad, flat.split([p.numel() for p in with_grad]), strict=True):
        p.grad.copy_(g.view_as(p.grad))


def clip_gradients(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """`clip_grad_norm_` over sharded (DTensor) and whole gradients together: the norm of the
    shards is reduced over ranks, then combined with the norm of the whole ones."""
    sharded = [p for p in params if isinstance(p.grad, DTensor)]
    whole = [p for p in params if p.grad is not None and not isinstance(p.grad, DTensor)]
    norms = []
    if sharded:
        norms.append(torch.nn.utils.get_total_norm([p.grad for p in sharded]).full_tensor())
    if whole:
        norms.append(torch.nn.utils.get_total_norm([p.grad for p in whole]))
    if not norms:
        return torch.tensor(0.0)
    total = torch.linalg.vector_norm(torch.stack(norms))
    for group in (sharded, whole):
        if group:
            torch.nn.utils.clip_grads_with_norm_(group, max_norm, total)
    return total
