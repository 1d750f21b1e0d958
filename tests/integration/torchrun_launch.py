"""Launch a command on local gloo ranks with torchrun, for the multi-process tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import uuid

import pytest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MARKER = "ANYBIND_TEST_TORCHRUN"


def kill_marked(marker: str) -> None:
    """SIGKILL every process launched with this marker in its environment. torchrun starts each
    rank in a session of its own, so a rank stuck tearing down its process group after torchrun
    returned is out of reach of the launcher's process group; it must not outlive the test."""
    import psutil

    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(MARKER) == marker:
                proc.kill()


def torchrun(
    args: list[str], *, world: int, timeout_s: int, no_python: bool = False, **env: str
) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node=world ARGS`; the whole process group is killed on overrun,
    and any rank still alive when torchrun returns is killed too."""
    marker = uuid.uuid4().hex
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={world}",
        "--nnodes=1",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        *(["--no-python"] if no_python else []),
        *args,
    ]
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1", MARKER: marker, **env},
        start_new_session=True,
    )
    try:
        stdout, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        kill_marked(marker)  # the ranks first: they hold the output pipe too
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, _ = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout_s} s:\n{stdout[-4000:]}")
    finally:
        kill_marked(marker)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, "")
