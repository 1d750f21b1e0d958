"""numpy's BLAS threads and torch's threads must not compete.

numpy and scipy ship OpenBLAS, whose worker threads busy-wait after every call; a data path that
touches numpy linear algebra (the drawings' affine maps, splines) wakes them, and on a small
machine they then take the cores torch's OpenMP threads need: on 2 cores a time-series tower's
training step measured 0.40 s with them and 0.03 s without. Loops that run torch on many batches
therefore hold numpy's BLAS to one thread (torch's own threads are unaffected).
"""

from __future__ import annotations

from contextlib import AbstractContextManager

from threadpoolctl import threadpool_limits


def one_blas_thread() -> AbstractContextManager[object]:
    """A context in which numpy's BLAS (OpenBLAS / MKL through numpy) uses one thread."""
    return threadpool_limits(limits=1, user_api="blas")
