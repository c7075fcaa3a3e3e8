"""A steady load for a while, sampling the worker's resident memory: does it stay flat?

Used by ``knnstream bench --soak-seconds``: after the throughput and latency phases, records are
offered at a fixed rate in windows; at the end of each window (every record of it predicted) the
resident memory of the worker's process, and of its whole process tree (Dask workers included),
is sampled.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from stream.demo.local_worker import process_tree

MIB = 1024 * 1024


@dataclass(frozen=True)
class SoakResult:
    seconds: float
    worker_rss_mib: list[float]  # the worker process, at the end of each window
    tree_rss_mib: list[float]  # the worker and its Dask processes

    @property
    def growth_mib(self) -> float:
        """Worker RSS at the end minus after the first window (allocator warm-up excluded)."""
        return self.worker_rss_mib[-1] - self.worker_rss_mib[0]


def soak(run_window: Callable[[int], None], pid: int, seconds: float, window_s: float = 30.0) -> SoakResult:
    """Run ``ceil(seconds / window_s)`` windows (``run_window(n)`` returns once window n's
    records are all predicted), sampling memory after each."""
    worker, tree = [], []
    for number in range(max(1, math.ceil(seconds / window_s))):
        run_window(number)
        own, total = rss_mib(pid)
        worker.append(own)
        tree.append(total)
    return SoakResult(seconds, worker, tree)


def rss_mib(pid: int) -> tuple[float, float]:
    """Resident memory of process ``pid`` and of it with all its descendants, in MiB."""
    own, descendants = process_tree(pid, lambda process: process.memory_info().rss)
    return own / MIB, (own + descendants) / MIB
