from collections.abc import Sequence
from typing import Any

import pytest

from stream.batching.microbatch import POLL_SLICE_S, MicroBatch, collect_batch
from tests.fakes import FakeMessage


class ScriptedPoll:
    """Returns prepared answers and advances a fake clock by the time each poll would take."""

    def __init__(self, answers: list[list[Any]], clock: list[float], step_s: float) -> None:
        self.answers, self.clock, self.step_s = answers, clock, step_s
        self.calls: list[tuple[int, float]] = []

    def __call__(self, max_messages: int, timeout_s: float) -> Sequence[Any]:
        self.calls.append((max_messages, timeout_s))
        self.clock[0] += self.step_s
        return self.answers.pop(0)[:max_messages] if self.answers else []


def test_batch_closes_at_max_records() -> None:
    clock = [0.0]
    poll = ScriptedPoll(
        [
            [FakeMessage(b"a", 0)],
            [FakeMessage(b"a", i) for i in range(1, 3)],
            [FakeMessage(b"b", i) for i in range(3, 9)],
        ],
        clock,
        0.01,
    )
    batch = collect_batch(poll, max_records=5, max_wait_s=10, clock=lambda: clock[0])
    assert batch is not None and len(batch) == 5
    assert [asked for asked, _ in poll.calls] == [1, 4, 2]  # asked only for what was missing


def test_the_first_poll_returns_with_the_first_record_and_the_wait_starts_then() -> None:
    """A batch consume waits for as many records as it asks for: asking for a whole batch at an
    idle moment would hold the first record for the idle wait, on top of the batch's own."""
    clock = [0.0]
    poll = ScriptedPoll([[FakeMessage(b"a", 0)]] + [[] for _ in range(100)], clock, 0.01)
    batch = collect_batch(poll, max_records=1000, max_wait_s=0.05, idle_wait_s=0.5, clock=lambda: clock[0])
    assert batch is not None and batch.opened_at == 0.01
    assert poll.calls[0] == (1, 0.5)
    assert all(timeout <= 0.05 for _, timeout in poll.calls[1:])


def test_batch_closes_at_max_wait() -> None:
    clock = [0.0]
    poll = ScriptedPoll([[FakeMessage(b"a", 0)]] + [[] for _ in range(100)], clock, 0.05)
    batch = collect_batch(poll, max_records=1000, max_wait_s=0.2, clock=lambda: clock[0])
    assert batch is not None and len(batch) == 1
    assert len(poll.calls) <= 6


def test_no_records_gives_none() -> None:
    clock = [0.0]
    assert collect_batch(ScriptedPoll([], clock, 0.5), 10, 1.0, clock=lambda: clock[0]) is None


def test_offsets_per_partition() -> None:
    batch = MicroBatch(
        [
            FakeMessage(b"", offset=7, partition=1),
            FakeMessage(b"", offset=3, partition=0),
            FakeMessage(b"", offset=5, partition=1),
            FakeMessage(b"", offset=4, partition=0),
        ]
    )
    assert [(p.partition, p.offset) for p in batch.next_offsets()] == [(0, 5), (1, 8)]
    assert [(p.partition, p.offset) for p in batch.first_offsets()] == [(0, 3), (1, 5)]


def test_offsets_per_partition_of_several_topics() -> None:
    batch = MicroBatch(
        [
            FakeMessage(b"", offset=9, topic="b", partition=0),
            FakeMessage(b"", offset=2, topic="a", partition=0),
            FakeMessage(b"", offset=1, topic="b", partition=0),
            FakeMessage(b"", offset=6, topic="a", partition=3),
            FakeMessage(b"", offset=4, topic="a", partition=0),
        ]
    )
    assert [(p.topic, p.partition, p.offset) for p in batch.next_offsets()] == [("a", 0, 5), ("a", 3, 7), ("b", 0, 10)]
    assert [(p.topic, p.partition, p.offset) for p in batch.first_offsets()] == [("a", 0, 2), ("a", 3, 6), ("b", 0, 1)]
    assert MicroBatch([]).next_offsets() == []


def test_records_read_ahead_count_their_wait_from_when_they_were_read() -> None:
    """Records read while batches were in flight have waited already: a batch whose first record
    was read ``max_wait_s`` ago takes all that was read, and waits for no more."""
    clock = [10.0]
    read = [[FakeMessage(b"a", 0)], [FakeMessage(b"a", i) for i in range(1, 500)], [FakeMessage(b"a", 500)]]
    poll = ScriptedPoll(read + [[] for _ in range(100)], clock, 0.001)
    batch = collect_batch(poll, max_records=1000, max_wait_s=0.2, clock=lambda: clock[0], read_since=9.7)
    assert batch is not None and batch.opened_at == 9.7
    assert len(batch) == 500  # the first record, then all the rest read ahead in one poll
    assert [timeout for _, timeout in poll.calls[1:]] == [0.0]


@pytest.mark.parametrize("between_polls", [None, lambda: None])
def test_a_batch_closes_at_its_wait_while_records_keep_arriving(between_polls: Any) -> None:
    """A steady trickle (a record every 0.5 ms) never holds a batch open past its wait."""
    clock = [0.0]
    poll = ScriptedPoll([[FakeMessage(b"a", i)] for i in range(100_000)], clock, 0.0005)
    batch = collect_batch(
        poll, max_records=50_000, max_wait_s=0.02, clock=lambda: clock[0], between_polls=between_polls
    )
    assert batch is not None and len(batch) <= 42  # 20 ms of records, and one last poll
    assert clock[0] <= 0.0215


def test_records_read_ahead_a_moment_ago_wait_out_the_rest() -> None:
    clock = [10.0]
    poll = ScriptedPoll([[FakeMessage(b"a", 0)]] + [[] for _ in range(100)], clock, 0.01)
    batch = collect_batch(poll, max_records=1000, max_wait_s=0.2, clock=lambda: clock[0], read_since=9.95)
    assert batch is not None and batch.opened_at == 9.95
    assert poll.calls[1][1] == pytest.approx(0.14)  # what was left of the 0.2 s after the first poll
    assert len(poll.calls) <= 17  # polls of 0.01 s until 10.15 (from 10.01, not 10.21), then one more


def test_work_between_polls_runs_in_slices_of_the_wait() -> None:
    """The consumer commits delivered batches while the next one fills: the wait is polled in
    short slices, with the work after each poll, and still ends when the batch's wait is over."""
    clock = [0.0]
    poll = ScriptedPoll([[FakeMessage(b"a", 0)]] + [[] for _ in range(100)], clock, POLL_SLICE_S)
    ticks: list[float] = []
    batch = collect_batch(
        poll, max_records=1000, max_wait_s=0.1, clock=lambda: clock[0], between_polls=lambda: ticks.append(clock[0])
    )
    assert batch is not None and len(batch) == 1
    assert all(timeout <= POLL_SLICE_S for _, timeout in poll.calls[1:])
    assert len(ticks) == len(poll.calls) - 1 >= 10  # after every poll of the wait
