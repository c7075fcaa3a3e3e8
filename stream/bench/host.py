"""How busy the host's cores were over a span of the benchmark, and how many processes the
benchmark's own sending and reading take on it.

A rate below what the transport allows has one of two causes: the cores are all busy (the CPU
is the wall, and less work per record is the cure), or they are not (something waits: a lock,
a round trip, a batch's wait, and more overlap is the cure). The share of the cores' time spent
busy over the span, every process of the host counted (the broker and the sender too when they
run here), tells the two apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class CoreTimes:
    """Seconds the host's cores spent busy and in all, summed over the cores, since boot."""

    busy_s: float
    all_s: float

    def busy_share_since(self, earlier: CoreTimes) -> float:
        """The share of the cores' time spent busy between ``earlier`` and these times (0 to 1)."""
        spent = self.all_s - earlier.all_s
        return round((self.busy_s - earlier.busy_s) / spent, 3) if spent > 0 else 0.0


def core_times() -> CoreTimes:
    """The host's core times now: busy is everything but idle and waiting for I/O."""
    times = psutil.cpu_times()
    total = sum(times)
    waiting = times.idle + getattr(times, "iowait", 0.0)
    # guest time is counted in user time too (Linux): taken out of the total once
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    return CoreTimes(total - waiting, total)


def bench_processes(asked: int = 0) -> int:
    """Processes that send the backlog's burst, or read the output topic: ``asked``, or when 0
    one for every four cores of the host, one to four. One of each topped out near 500,000
    records a second on a sixteen-core host, short of the workers it benchmarks; on a small host
    the workers need the cores more than the bench does."""
    return asked if asked > 0 else max(1, min(4, (os.cpu_count() or 1) // 4))
