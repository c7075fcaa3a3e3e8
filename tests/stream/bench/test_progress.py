"""The backlog's course: each replica's predicted records and the predictions read, sampled in a
thread, and the rates between samples."""

from __future__ import annotations

import itertools
import threading

import pytest

from stream.bench.progress import ProgressSampler, describe_moved, describe_progress


class Counters:
    """Two replicas' totals and the reader's count, which advance only when told to."""

    def __init__(self) -> None:
        self.predicted = [1_000.0, 2_000.0]  # before the backlog: its counts start from these
        self.received = 500
        self.reads = threading.Semaphore(0)
        self.fail = False

    def read_predicted(self) -> list[float]:
        self.reads.release()
        if self.fail:
            raise ConnectionError("replica 1 does not answer")
        return list(self.predicted)

    def advance(self, first: float, second: float, received: int) -> None:
        self.predicted = [self.predicted[0] + first, self.predicted[1] + second]
        self.received += received


def wait_reads(counters: Counters, count: int) -> None:
    for _ in range(count):
        assert counters.reads.acquire(timeout=10), "the sampler stopped reading"


def test_samples_count_from_the_start_and_end_with_a_last_sample() -> None:
    counters = Counters()
    sampler = ProgressSampler(counters.read_predicted, lambda: counters.received, every_s=0.01)
    sampler.start()
    wait_reads(counters, 1)  # the baseline
    counters.advance(100, 300, 50)
    samples = sampler.stop()
    assert samples, "no sample"
    last = samples[-1]
    assert last[1:] == (50.0, 100.0, 300.0)  # read, then each replica, counted from the start
    assert all(later[0] >= earlier[0] for earlier, later in itertools.pairwise(samples))


def test_a_replica_that_does_not_answer_ends_the_sampling_but_not_the_run() -> None:
    counters = Counters()
    sampler = ProgressSampler(counters.read_predicted, lambda: counters.received, every_s=0.01)
    sampler.start()
    wait_reads(counters, 2)  # the baseline and a first sample at least
    counters.fail = True
    wait_reads(counters, 1)
    samples = sampler.stop()
    assert all(sample[1:] == (0.0, 0.0, 0.0) for sample in samples)


def test_nothing_is_sampled_when_the_replicas_do_not_answer_at_the_start() -> None:
    counters = Counters()
    counters.fail = True
    sampler = ProgressSampler(counters.read_predicted, lambda: counters.received, every_s=0.01)
    sampler.start()
    assert sampler.stop() == ()


def test_describe_gives_the_rates_between_samples() -> None:
    samples = ((1.0, 150_000.0, 100_000.0, 90_000.0), (3.0, 350_000.0, 300_000.0, 90_000.0))
    assert describe_progress(samples) == (
        "0.0-1.0 s: read 150k/s, predicted 100k + 90k/s; 1.0-3.0 s: read 100k/s, predicted 100k + 0k/s"
    )


@pytest.mark.parametrize("samples", [(), ((0.0, 0.0, 0.0),)])
def test_describe_without_a_span(samples: tuple[tuple[float, ...], ...]) -> None:
    assert describe_progress(samples) == "not sampled"


def test_describe_moved_gives_the_loops_rates_between_samples() -> None:
    assert describe_moved(((0.5, 50_000), (1.5, 250_000))) == "0.0-0.5 s: 100k/s; 0.5-1.5 s: 200k/s"
    assert describe_moved(()) == "not sampled"
