"""`python killed_train.py CONFIG OUT STEP`: train, and die by SIGKILL right after STEP (after
its checkpoint, if one is due), as a crash or an evicted job would."""

from __future__ import annotations

import os
import signal
import sys

from anybind.recipes.train import train


def main(config: str, out: str, kill_at: int) -> None:
    def after_step(step: int) -> None:
        if step == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)

    train(config, out, progress=False, after_step=after_step)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
