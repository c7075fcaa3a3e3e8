"""What a scenario reads back: the group's committed offsets, the output topic, and the tally of
lost and duplicated records."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from tests.stream.guarantees.workers import WorkerProcess


class GroupOffsets:
    """Reads the offsets a consumer group committed on a topic, without joining the group."""

    def __init__(self, bootstrap: str, group: str, topic: str, partitions: int) -> None:
        # read_uncommitted: committed offsets as they stand, without waiting for pending transactions
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": group,
                "enable.auto.commit": False,
                "isolation.level": "read_uncommitted",
            }
        )
        self._partitions = [TopicPartition(topic, p) for p in range(partitions)]

    def committed(self) -> dict[int, int]:
        """Partition → committed offset (0 when none yet)."""
        positions = self._consumer.committed(self._partitions, timeout=10)
        return {p.partition: max(0, p.offset) for p in positions}

    def total(self) -> int:
        return sum(self.committed().values())

    def wait_for(
        self, at_least: int, workers: Sequence[WorkerProcess], timeout_s: float = 120.0, interval_s: float = 0.05
    ) -> int:
        """Poll until the committed offsets add up to ``at_least``; the workers must stay alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while True:
            total = self.total()
            if total >= at_least:
                return total
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"committed offsets reached {total}, not {at_least}, in {timeout_s} s")
            time.sleep(interval_s)

    def close(self) -> None:
        self._consumer.close()


class TopicWatcher:
    """Follows a topic from its start (no consumer group), counting what arrives."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, isolation: str = "read_uncommitted") -> None:
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"watcher-{time.time_ns()}",
                "enable.auto.commit": False,
                "isolation.level": isolation,
                "enable.partition.eof": True,
                "fetch.wait.max.ms": 10,
            }
        )
        self._partitions = [TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(partitions)]
        self._consumer.assign(self._partitions)
        self._reached: dict[int, int] = {}  # partition → offset up to which it was read
        self.messages: list[Message] = []

    def poll(self, timeout_s: float = 0.01) -> int:
        """Take what has arrived; the number of messages seen so far."""
        for message in self._consumer.consume(num_messages=10_000, timeout=timeout_s):
            error = message.error()
            partition, offset = int(message.partition() or 0), int(message.offset() or 0)
            if error is None:
                self.messages.append(message)
                self._reached[partition] = max(self._reached.get(partition, 0), offset + 1)
            elif error.code() == KafkaError._PARTITION_EOF:
                self._reached[partition] = max(self._reached.get(partition, 0), offset)
        return len(self.messages)

    def wait_for(self, at_least: int, workers: Sequence[WorkerProcess], timeout_s: float = 120.0) -> int:
        """Poll until ``at_least`` messages arrived; the workers must stay alive meanwhile."""
        deadline = time.monotonic() + timeout_s
        while (seen := self.poll()) < at_least:
            for worker in workers:
                worker.check_alive()
            if time.monotonic() > deadline:
                raise AssertionError(f"{seen} messages arrived, not {at_least}, in {timeout_s} s")
        return seen

    def drain(self, timeout_s: float = 30.0) -> int:
        """Read up to the end each partition has now; the number of messages seen."""
        ends = {p.partition: self._consumer.get_watermark_offsets(p, timeout=10)[1] for p in self._partitions}
        deadline = time.monotonic() + timeout_s
        while any(self._reached.get(partition, 0) < end for partition, end in ends.items()):
            assert time.monotonic() < deadline, f"could not read to the end of the topic in {timeout_s} s"
            self.poll()
        return len(self.messages)

    def close(self) -> None:
        self._consumer.close()


def read_topic(
    bootstrap: str, topic: str, isolation: str = "read_uncommitted", timeout_s: float = 120.0
) -> list[Message]:
    """Every message of ``topic`` up to its current end (read_committed: up to the last stable offset)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
        }
    )
    try:
        partitions = list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        messages: list[Message] = []
        at_end: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(at_end) < len(partitions):
            assert time.monotonic() < deadline, f"{topic}: only partitions {sorted(at_end)} read to the end"
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                error = message.error()
                if error is None:
                    messages.append(message)
                    at_end.discard(int(message.partition() or 0))
                elif error.code() == KafkaError._PARTITION_EOF:
                    at_end.add(int(message.partition() or 0))
                else:
                    raise AssertionError(f"reading {topic}: {error}")
        return messages
    finally:
        consumer.close()


def prediction_ids(messages: Sequence[Message]) -> list[str]:
    return [str(json.loads(m.value() or b"{}")["id"]) for m in messages]


@dataclass(frozen=True)
class Tally:
    expected: int
    received: int
    lost: int
    duplicated: int


def tally(expected_ids: Iterable[str], received_ids: Sequence[str]) -> Tally:
    expected = set(expected_ids)
    counts = Counter(received_ids)
    return Tally(
        expected=len(expected),
        received=len(received_ids),
        lost=len(expected - counts.keys()),
        duplicated=sum(n - 1 for n in counts.values()),
    )
