"""torchrun worker for test_distributed_training.py: one training step's gradients under DDP.

    ddp_grad_worker.py CONFIG.yaml OUT_DIR

Every rank builds the space and objective of CONFIG with the same seed, takes its chunk of the
first global batch (`StepBatchSampler`), runs `forward_backward` through the DDP-wrapped
`Aligner` and, on rank 0, saves the averaged parameter gradients and the logged loss.
"""

from __future__ import annotations

import gc
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from anybind.config import load_config
from anybind.data.loader import LoaderSettings, StepBatchSampler, batches, make_loader
from anybind.objectives import build_objective
from anybind.recipes.data import build_dataset
from anybind.recipes.distributed import ProcessGroup, data_parallel
from anybind.recipes.train_step import Aligner, forward_backward
from anybind.space import Space


def main(config_path: str, out: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    config = load_config(config_path)
    torch.manual_seed(0)
    space = Space(config).train()
    objective = build_objective(config)
    dataset, _ = build_dataset(config.data.train, config, space.modalities, progress=False)
    sampler = StepBatchSampler(len(dataset), config.optim.batch_size, 0, 0, 1, rank, world)
    loader = make_loader(dataset, sampler, LoaderSettings(), keep=list(space.towers))
    (batch,) = list(batches(loader))
    model = data_parallel(Aligner(space, objective, config), torch.device("cpu"),
                          ProcessGroup(rank, world))  # fmt: skip
    loss, _ = forward_backward(model, batch, 0, torch.device("cpu"))
    grads = {k: p.grad.clone() for k, p in model.module.named_parameters() if p.grad is not None}
    if rank == 0:
        torch.save({"loss": loss, "grads": grads}, Path(out) / "grads.pt")
    dist.barrier()
    del model  # the DDP reducer goes before the process group
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
    os._exit(0)  # as `anybind` does under torchrun: no rank waits in the interpreter's teardown
