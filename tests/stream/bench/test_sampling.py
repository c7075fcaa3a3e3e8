"""A sampler's thread: stopped when told, and never waited on for longer than its bound."""

from __future__ import annotations

import threading

from stream.bench.sampling import SamplingThread


def test_a_thread_that_ends_when_told_stops_in_time() -> None:
    ticks: list[int] = []

    def run(stopping: threading.Event) -> None:
        while not stopping.wait(0.01):
            ticks.append(1)

    sampling = SamplingThread("test sampler", run, join_timeout_s=10)
    assert not sampling.started
    sampling.start()
    assert sampling.started
    assert sampling.stop()
    assert not sampling.started


def test_a_thread_that_hangs_is_left_behind_after_the_bound() -> None:
    release = threading.Event()
    sampling = SamplingThread("hanging sampler", lambda _stopping: release.wait(30), join_timeout_s=0.05)
    sampling.start()
    try:
        assert not sampling.stop()
    finally:
        release.set()


def test_a_thread_never_started_did_not_stop() -> None:
    assert not SamplingThread("idle sampler", lambda _stopping: None, join_timeout_s=1).stop()
