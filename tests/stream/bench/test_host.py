"""The host's busy share: what the cores did between two readings."""

from __future__ import annotations

import time

from stream.bench.host import CoreTimes, core_times


def test_the_busy_share_is_the_busy_time_over_all_the_cores_time() -> None:
    assert CoreTimes(30.0, 100.0).busy_share_since(CoreTimes(10.0, 60.0)) == 0.5
    assert CoreTimes(10.0, 60.0).busy_share_since(CoreTimes(10.0, 60.0)) == 0.0  # no time passed


def test_a_busy_loop_shows_on_the_host() -> None:
    before = core_times()
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # one core busy for 0.3 s of CPU
        pass
    after = core_times()
    assert after.busy_s - before.busy_s >= 0.25
    assert 0.0 < after.busy_share_since(before) <= 1.0
