"""Micro-batches bounded by record count and by wait time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition


@dataclass(frozen=True)
class MicroBatch:
    """Records consumed together; they are predicted, delivered and committed as one."""

    messages: Sequence[Any]
    opened_at: float = field(default_factory=time.monotonic)

    def __len__(self) -> int:
        return len(self.messages)

    def next_offsets(self) -> list[TopicPartition]:
        """Per partition, the offset after the last record: what a commit of this batch stores."""
        highest: dict[tuple[str, int], int] = {}
        for message in self.messages:  # the hot loop of a commit: one comparison, no max() call
            position = (message.topic(), message.partition())
            offset = message.offset()
            if offset > highest.get(position, -1):
                highest[position] = offset
        return [TopicPartition(topic, partition, offset + 1) for (topic, partition), offset in sorted(highest.items())]

    def first_offsets(self) -> list[TopicPartition]:
        """Per partition, the first offset of the batch: where a rewind seeks to."""
        lowest: dict[tuple[str, int], int] = {}
        for message in self.messages:
            position = (message.topic(), message.partition())
            lowest[position] = min(lowest.get(position, message.offset()), message.offset())
        return [TopicPartition(topic, partition, offset) for (topic, partition), offset in sorted(lowest.items())]


Poll = Callable[[int, float], Sequence[Any]]
# With work to do between polls (committing the batches delivered meanwhile), a batch's wait is
# polled in slices this long: the work is done at most this late.
POLL_SLICE_S = 0.01


def collect_batch(
    poll: Poll,
    max_records: int,
    max_wait_s: float,
    idle_wait_s: float = 0.5,
    clock: Callable[[], float] = time.monotonic,
    read_since: float | None = None,
    between_polls: Callable[[], object] | None = None,
) -> MicroBatch | None:
    """Poll until ``max_records`` arrived or ``max_wait_s`` passed since the first one.

    ``poll(n, timeout)`` returns at most ``n`` messages, and waits for all ``n`` until the
    timeout (as librdkafka's batch consume does). So the first poll asks for one record: it returns
    as that record arrives, and the batch's wait starts then, not when ``idle_wait_s`` is over.
    ``read_since``: when the first record was read, if ``poll`` hands out records read earlier
    (read ahead while batches were in flight): their wait started then, and a batch whose first
    record has waited ``max_wait_s`` already takes what has been read and goes.
    ``between_polls``: called after every poll of the batch's wait (not after the first poll, the
    one for its first record), which is then polled in slices of :data:`POLL_SLICE_S`.
    Returns ``None`` when nothing arrived within ``idle_wait_s``, so the caller gets control back
    regularly.
    """
    messages: list[Any] = list(poll(1, idle_wait_s))
    if not messages:
        return None
    opened_at = clock() if read_since is None else min(read_since, clock())
    deadline = opened_at + max_wait_s
    slice_s = POLL_SLICE_S if between_polls is not None else max_wait_s
    while len(messages) < max_records:
        remaining = deadline - clock()
        # Past the wait, one poll that waits for nothing takes what was already read, and the
        # batch closes: records that keep arriving never hold it open.
        messages.extend(poll(max_records - len(messages), min(max(0.0, remaining), slice_s)))
        if between_polls is not None:
            between_polls()
        if remaining <= 0:
            break
    return MicroBatch(messages, opened_at)
