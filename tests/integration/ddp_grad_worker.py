"""torchrun worker for test_distributed_training.py: one training step's gradients on 2 ranks.

    ddp_grad_worker.py CASES.json     (a list of {"config": CONFIG.yaml, "out": OUT_DIR})

For each case, in one process group, every rank builds the space and objective of CONFIG with
the same seed, takes its chunk of the first global batch (`StepBatchSampler`), runs
`forward_backward` through the `Aligner`, wrapped as `train.parallel` says (DDP, or sharded by
FSDP2) and, on rank 0, saves the averaged parameter gradients (whole: FSDP's shards are
gathered), the logged loss, and the gradients after `clip_gradients` to a tenth of their norm.
"""

from __future__ import annotations

import gc
import json
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

from anybind.config import load_config
from anybind.data.loader import LoaderSettings, StepBatchSampler, batches, make_loader
from anybind.objectives import build_objective
from anybind.recipes.data import build_dataset
from anybind.recipes.distributed import ProcessGroup, parallelize
from anybind.recipes.fsdp import clip_gradients
from anybind.recipes.train_step import Aligner, forward_backward
from anybind.space import Space


def whole(grad: torch.Tensor) -> torch.Tensor:
    return grad.full_tensor() if isinstance(grad, DTensor) else grad.clone()


def main(cases_path: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    for case in json.loads(Path(cases_path).read_text()):
        one_step(case["config"], case["out"])
    dist.barrier()
    dist.destroy_process_group()


def one_step(config_path: str, out: str) -> None:
    rank, world = dist.get_rank(), dist.get_world_size()
    config = load_config(config_path)
    torch.manual_seed(0)
    space = Space(config).train()
    objective = build_objective(config)
    dataset, _ = build_dataset(config.data.train, config, space.modalities, progress=False)
    sampler = StepBatchSampler(len(dataset), config.optim.batch_size, 0, 0, 1, rank, world)
    loader = make_loader(dataset, sampler, LoaderSettings(), keep=list(space.towers))
    (batch,) = list(batches(loader))
    model = parallelize(Aligner(space, objective, config), torch.device("cpu"),
                        ProcessGroup(rank, world), config.train.parallel)  # fmt: skip
    aligner = getattr(model, "module", model)
    loss, _ = forward_backward(model, batch, 0, torch.device("cpu"))
    named = [(k, p) for k, p in aligner.named_parameters() if p.grad is not None]
    grads = {k: whole(p.grad) for k, p in named}
    norm = clip_gradients([p for _, p in named], 0.1)
    clipped = {k: whole(p.grad) for k, p in named}
    if rank == 0:
        result = {"loss": loss, "grads": grads, "clipped": clipped, "norm": norm}
        torch.save(result, Path(out) / "grads.pt")
    dist.barrier()
    del model, aligner  # the DDP reducer goes before the process group
    gc.collect()


if __name__ == "__main__":
    main(sys.argv[1])
    os._exit(0)  # as `anybind` does under torchrun: no rank waits in the interpreter's teardown
