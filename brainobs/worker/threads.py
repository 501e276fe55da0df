"""Threads per worker: workers started together on one machine share its cores instead of each taking all.

Registration (torch), BLAS and numba size their thread pools to every core by default, so N workers on N cores
run N x N threads that preempt each other: two workers on two cores made each plane of a mesoscope session 2.7x
slower than one worker did (`benchmarks/bench_planes.py`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# torch takes its intra-op threads from OMP_NUM_THREADS; OpenBLAS, MKL, numexpr and numba read their own
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "NUMBA_NUM_THREADS",
)


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the system reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def shared_thread_env(workers: int, environ: Mapping[str, str]) -> dict[str, str]:
    """The thread-pool variables for each of ``workers`` workers on this machine: an even share of the usable
    cores (at least 1), for every variable that ``environ`` does not already set (a user's choice stands)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    share = max(1, usable_cores() // workers)
    return {name: str(share) for name in THREAD_VARIABLES if name not in environ}
