"""`optim.micro_batches = k > 1`: GradCache in the trainer, in one process and under torchrun.

GradCache (Gao et al. 2021; the algorithm is described in `anybind.objectives.grad_cache`)
splits the backward at the embeddings: every chunk of rows is embedded without a graph, the
loss over the whole (gathered) batch is differentiated with respect to the embeddings only, and
each chunk is embedded again with a graph and backpropagated with its slice of that gradient.
Here the third phase goes through the model's own forward (`Aligner.forward(..., replay=…)`), so
that DistributedDataParallel and FSDP2 see every pass:

- under DDP the first k-1 passes run in `no_sync()` and the last one averages the accumulated
  gradients (one all-reduce per step, as without micro-batches); the loss is differentiated on
  every rank over the gathered batch, so rank r's slice is the full-batch gradient of its rows,
  times the world size for DDP's average to give it back;
- the loss's own parameters (temperature, scales, biases) get their gradient in the last pass,
  which scores the loss again on the cached (constant) embeddings;
- under FSDP every pass runs every sharded tower on every rank (their gathers are collectives).

Dropout replays exactly: the RNG state of each chunk's first pass is restored for its second.
BatchNorm sees chunk statistics, and updates its running statistics in both passes.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist
from torch import nn

from anybind.objectives.grad_cache import restore_rng, rng_state

if TYPE_CHECKING:
    from anybind.recipes.train_step import Aligner


@dataclass
class Replay:
    """The second pass over one chunk of a rank's rows."""

    rows: torch.Tensor
    #: world · ∂loss/∂(this chunk's embeddings), per modality
    grads: dict[str, torch.Tensor]
    #: (embeddings, masks, groups) of the gathered batch, on the last chunk only: the loss is
    #: scored again on them so that its own parameters get their gradient in a synced pass
    loss_inputs: tuple[dict, dict, torch.Tensor | None] | None


def grad_cache_backward(
    model: nn.Module, batch: dict[str, Any], step: int
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The loss and terms of the global batch; its gradient is accumulated into `.grad`."""
    aligner: Aligner = getattr(model, "module", model)
    chunks = torch.arange(len(batch["id"])).tensor_split(aligner.config.optim.micro_batches)
    states, parts = [], {name: [] for name in aligner.space.towers}
    with torch.no_grad():
        for rows in chunks:
            states.append(rng_state())
            for name, embedded in aligner.embed_chunk(batch, rows).items():
                parts[name].append(embedded)
    after = rng_state()
    local = {name: torch.cat(p) for name, p in parts.items()}
    features, masks, groups, own = aligner.global_batch(local, batch)
    leaves = {name: f.detach().requires_grad_(True) for name, f in features.items()}
    loss, terms = aligner.loss_of(leaves, masks, groups, step)
    grads = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1
    cached = {n: g[own] * world for n, g in zip(leaves, grads, strict=True) if g is not None}
    constants = ({n: f.detach() for n, f in leaves.items()}, masks, groups)
    for i, rows in enumerate(chunks):
        last = i == len(chunks) - 1
        replay = Replay(rows, {n: g[rows] for n, g in cached.items()}, constants if last else None)
        restore_rng(states[i])
        no_sync = getattr(model, "no_sync", None)
        with no_sync() if no_sync is not None and not last else contextlib.nullcontext():
            model(batch, step, replay=replay).backward()
    restore_rng(after)
    return loss.detach(), terms
