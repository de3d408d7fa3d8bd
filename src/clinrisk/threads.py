"""How many threads the numeric libraries (OpenMP, BLAS) may use, from settings.

On a shared host, OpenMP sizes its pool from the machine's core count, not from the cores this
process may run on (a container's CPU set, `taskset`); on 2 busy cores, gradient boosting with
more threads than cores ran 25x slower than with one. Training, `clinrisk predict` and the
flows therefore run inside `limited(settings)`: `CLINRISK_THREADS`, or else the cores this
process is allowed on (`os.sched_getaffinity`). threadpoolctl applies the limit to every
loaded OpenMP and BLAS runtime and restores it on exit.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from threadpoolctl import threadpool_limits


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def thread_count(configured: int | None) -> int:
    """`configured` when set, else the available cores."""
    return configured if configured else available_cores()


@contextmanager
def limited(configured: int | None) -> Iterator[int]:
    """Run the block with OpenMP and BLAS limited to `thread_count(configured)` threads; yield it."""
    count = thread_count(configured)
    with threadpool_limits(limits=count):
        yield count
