"""torchrun worker for test_distributed_loss.py (gloo, CPU). Usage: distributed_worker.py OUT_DIR.

Every rank takes its slice of one seeded global batch (unequal slices, one split with an empty
rank), computes ``distributed_info_nce``, backpropagates, and saves per case: its loss, the
gradients of its local rows, and the gradient of the scale summed over ranks. A DDP case trains a
tiny two-tower model and saves the (DDP-averaged) parameter gradients. Rank 0 also saves the
inputs, so the test can compute the single-process reference.

ANYBIND_TEST_WORKER_FAIL_RANK=r makes rank r raise before the first collective (to check that
a failing worker fails the run rather than hanging it).
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def _load_objective(name: str):
    """anybind/objectives/<name>.py as a module, without running anybind/__init__.py.

    The package __init__ imports the training API and with it transformers (~5 s per process on
    a loaded CPU); the two modules used here import only torch. None if the file is missing.
    """
    package = importlib.util.find_spec("anybind")
    assert package is not None and package.submodule_search_locations, "anybind not installed"
    path = Path(package.submodule_search_locations[0]) / "objectives" / f"{name}.py"
    if not path.exists():
        return None
    spec = importlib.util.spec_from_file_location(f"_anybind_objectives_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_distributed = _load_objective("distributed")
distributed_info_nce, row_info_nce_sum = (
    _distributed.distributed_info_nce,
    _distributed.row_info_nce_sum,
)
_tiled = _load_objective("tiled")
tiled_row_info_nce = getattr(_tiled, "tiled_row_info_nce", None)

N, D, IN_A, IN_B = 8, 6, 7, 5
SCALE = 4.0
SPLITS = {"5+3": [5, 3], "8+0": [8, 0]}
GROUPS = [0, 1, 2, 0, 1, 0, 2, 3]  # groups 0 and 2 span both ranks of the 5+3 split
REDUCES = ("sum", "mean")
DDP_SPLIT = [5, 3]


def row_losses() -> dict[str, object]:
    losses: dict[str, object] = {"dense": row_info_nce_sum}
    if tiled_row_info_nce is not None:
        losses["tiled"] = functools.partial(tiled_row_info_nce, tile=2)
    return losses


class Towers(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fa = nn.Linear(IN_A, D)
        self.fb = nn.Linear(IN_B, D)
        self.log_scale = nn.Parameter(torch.tensor(SCALE).log())

    def forward(self, xa: torch.Tensor, xb: torch.Tensor):
        return (
            F.normalize(self.fa(xa), dim=1),
            F.normalize(self.fb(xb), dim=1),
            self.log_scale.exp(),
        )


def main(out: Path) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=60))
    rank, world = dist.get_rank(), dist.get_world_size()
    assert world == 2, world
    if os.environ.get("ANYBIND_TEST_WORKER_FAIL_RANK") == str(rank):
        raise RuntimeError(f"rank {rank}: failing on purpose")

    gen = torch.Generator().manual_seed(1234)
    a = F.normalize(torch.randn(N, D, generator=gen), dim=1)
    b = F.normalize(torch.randn(N, D, generator=gen), dim=1)
    groups = torch.tensor(GROUPS)
    xa, xb = torch.randn(N, IN_A, generator=gen), torch.randn(N, IN_B, generator=gen)

    results: dict[str, dict] = {}
    for split, sizes in SPLITS.items():
        start = sum(sizes[:rank])
        rows = slice(start, start + sizes[rank])
        for use_groups in (False, True):
            for reduce in REDUCES:
                for loss_name, row_loss in row_losses().items():
                    a_local = a[rows].clone().requires_grad_(True)
                    b_local = b[rows].clone().requires_grad_(True)
                    scale = torch.tensor(SCALE, requires_grad=True)
                    loss = distributed_info_nce(
                        a_local,
                        b_local,
                        scale,
                        groups[rows] if use_groups else None,
                        row_loss=row_loss,
                        ranks_reduce=reduce,
                    )
                    loss.backward()
                    scale_grad = scale.grad.clone()
                    dist.all_reduce(scale_grad)
                    key = f"{split}-{'groups' if use_groups else 'pairs'}-{reduce}-{loss_name}"
                    results[key] = {
                        "loss": loss.detach(),
                        "grad_a": a_local.grad,
                        "grad_b": b_local.grad,
                        "grad_scale_sum": scale_grad,
                    }

    # DDP: averaged parameter gradients with the default ranks_reduce="mean"
    torch.manual_seed(0)
    model = Towers()
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    ddp = DistributedDataParallel(model)
    start = sum(DDP_SPLIT[:rank])
    rows = slice(start, start + DDP_SPLIT[rank])
    emb_a, emb_b, scale = ddp(xa[rows], xb[rows])
    loss = distributed_info_nce(emb_a, emb_b, scale, groups[rows])
    loss.backward()
    results["ddp"] = {
        "loss": loss.detach(),
        "param_grads": {k: p.grad.clone() for k, p in model.named_parameters()},
    }

    torch.save(results, out / f"rank{rank}.pt")
    if rank == 0:
        torch.save(
            {
                "a": a,
                "b": b,
                "groups": groups,
                "scale": SCALE,
                "xa": xa,
                "xb": xb,
                "splits": SPLITS,
                "ddp_split": DDP_SPLIT,
                "ddp_init": init,
                "row_losses": list(row_losses()),
            },
            out / "inputs.pt",
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
