"""torchrun worker: `train_many.py CASES.json` trains each (config, out) of the list, one after
the other, in one process group (as `anybind train` under torchrun does for one), so that the
tests pay for starting the ranks once. A case that fails is recorded in OUT/error.txt and the
next one runs."""

from __future__ import annotations

import json
import os
import sys
import traceback
from datetime import timedelta
from pathlib import Path

import torch.distributed as dist

from anybind.recipes.train import train


def main(cases_path: str) -> None:
    dist.init_process_group("gloo", timeout=timedelta(seconds=120))
    for case in json.loads(Path(cases_path).read_text()):
        try:
            train(case["config"], case["out"], progress=False)
        except Exception:
            if dist.get_rank() == 0:
                Path(case["out"]).mkdir(parents=True, exist_ok=True)
                (Path(case["out"]) / "error.txt").write_text(traceback.format_exc())
            raise  # a rank that failed leaves the others at a collective: end the launch
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    os._exit(0)  # as `anybind` does under torchrun: no rank waits in the interpreter's teardown
