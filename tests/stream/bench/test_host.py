"""The host's busy share: what the cores did between two readings; the bench's own processes for its cores."""

from __future__ import annotations

import time
from collections import namedtuple

import psutil
import pytest

from stream.bench.host import CoreTimes, bench_processes, core_times

LinuxTimes = namedtuple("LinuxTimes", "user nice system idle iowait irq softirq steal guest guest_nice")


def test_the_busy_share_is_the_busy_time_over_all_the_cores_time() -> None:
    assert CoreTimes(30.0, 100.0).busy_share_since(CoreTimes(10.0, 60.0)) == 0.5
    assert CoreTimes(10.0, 60.0).busy_share_since(CoreTimes(10.0, 60.0)) == 0.0  # no time passed


def test_idle_and_io_waits_are_not_busy_and_guest_time_counts_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Linux counts guest time inside user time as well: it is not added to the total twice
    times = LinuxTimes(user=50.0, nice=1.0, system=9.0, idle=30.0, iowait=6.0, irq=1.0, softirq=1.0, steal=2.0,
                       guest=4.0, guest_nice=0.0)  # fmt: skip
    monkeypatch.setattr(psutil, "cpu_times", lambda: times)
    assert core_times() == CoreTimes(busy_s=64.0, all_s=100.0)


def test_a_busy_loop_shows_on_the_host() -> None:
    before = core_times()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # one core busy for 0.3 s of CPU
        pass
    after = core_times()
    assert after.busy_s - before.busy_s >= 0.25
    assert 0.0 < after.busy_share_since(before) <= 1.0


@pytest.mark.parametrize(("cores", "processes"), [(None, 1), (2, 1), (8, 2), (16, 4), (128, 4)])
def test_the_bench_takes_a_process_of_each_for_every_four_cores_up_to_four(
    monkeypatch: pytest.MonkeyPatch, cores: int | None, processes: int
) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: cores)
    assert bench_processes() == processes
    assert bench_processes(3) == 3  # asked for
