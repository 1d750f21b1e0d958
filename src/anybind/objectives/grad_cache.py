"""Gradient caching: a large contrastive batch under a small activation-memory budget.

Gao, Zhang, Han & Callan 2021, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup" (arXiv:2101.06983). A contrastive loss couples every row with every other row, so
the batch cannot simply be split into gradient-accumulation micro-batches: the loss of the full
batch is not a sum of per-micro-batch losses. But it depends on the encoders' parameters only
through the representations. GradCache therefore splits the backward pass at the representations:

1. embed every chunk of every modality without building a graph (no_grad);
2. concatenate the representations, make them leaf tensors, compute the full-batch loss and
   backpropagate it *to the representations only* (cheap: the loss graph is small), caching
   ∂loss/∂reps;
3. re-embed each chunk with a graph and backpropagate its slice of the cached gradient into the
   encoder (``torch.autograd.backward(reps_chunk, grad_chunk)``); parameter gradients accumulate
   over chunks.

By the chain rule the accumulated gradient equals that of one full-batch backward, at the memory
cost of one chunk's activations, for about one extra forward pass. The re-forward must reproduce
the first forward exactly, so the RNG state (dropout) is saved before each chunk's first forward
and restored for its re-forward. The trainer runs the same three phases through its model's
forward, so that DDP and FSDP see them (`anybind.recipes.micro_batches`).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

_RngState = tuple[Tensor, list[Tensor] | None]


def rng_state() -> _RngState:
    """torch's CPU generator state, and every CUDA device's when CUDA is available."""
    cuda = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    return torch.get_rng_state(), cuda


def restore_rng(state: _RngState) -> None:
    cpu, cuda = state
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


def grad_cache_step(
    encoders: dict[str, Callable[[Tensor], Tensor]],
    batch: dict[str, Tensor],
    loss_fn: Callable[[dict[str, Tensor]], Tensor],
    chunks: int,
) -> Tensor:
    """Accumulate into ``.grad`` the full-batch gradient of ``loss_fn`` with ``chunks`` chunks.

    encoders[m] maps a chunk of ``batch[m]`` (split along dim 0) to its representations;
    ``loss_fn`` receives the full-batch representations {m: (N, ...)} and returns a scalar.
    Parameters that ``loss_fn`` uses directly (a learnable logit scale) get their gradient from
    the single full-batch loss backward. Gradients are *added* to existing ``.grad`` (zero them
    before, step the optimiser after). Returns the (detached) full-batch loss.

    Equal to one full-batch backward when the encoders' forward depends only on the chunk and the
    RNG: dropout is handled (the RNG state of each chunk's first forward is restored for its
    re-forward, and the RNG ends where a single forward of every chunk would leave it), but
    BatchNorm in training mode sees chunk statistics and updates its running stats twice. Under
    DDP, wrap the re-forwards in ``no_sync()`` except the last to avoid one all-reduce per chunk.
    """
    if chunks < 1:
        raise ValueError(f"chunks must be >= 1, not {chunks}")
    missing = sorted(set(batch) - set(encoders))
    if missing:
        raise KeyError(f"no encoder for modalities {missing}")
    # tensor_split gives exactly `chunks` pieces (torch.chunk may give fewer); drop empty ones.
    pieces = {m: [c for c in x.tensor_split(chunks, dim=0) if c.shape[0]] for m, x in batch.items()}

    # 1. no-grad forward of every chunk, remembering the RNG state it started from
    states: dict[str, list[_RngState]] = {m: [] for m in pieces}
    reps: dict[str, Tensor] = {}
    for m, xs in pieces.items():
        outs = []
        for x in xs:
            states[m].append(rng_state())
            with torch.no_grad():
                outs.append(encoders[m](x))
        reps[m] = torch.cat(outs, dim=0).detach().requires_grad_(True)
    after_forward = rng_state()

    # 2. full-batch loss on leaf representations; backward caches d loss / d reps
    loss = loss_fn(reps)
    loss.backward()

    # 3. re-forward each chunk with a graph, under the same RNG state, and push its cached grad
    for m, xs in pieces.items():
        grad = reps[m].grad
        if grad is None:  # the loss does not depend on this modality
            continue
        grads = grad.split([x.shape[0] for x in xs], dim=0)
        for x, g, state in zip(xs, grads, states[m], strict=True):
            restore_rng(state)
            out = encoders[m](x)
            if out.requires_grad:  # a chunk may hold no trainable input (an absent modality)
                torch.autograd.backward(out, g)
    restore_rng(after_forward)
    return loss.detach()
