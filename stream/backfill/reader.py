"""Reading a bounded range of a topic without touching any consumer group's offsets.

The consumer is assigned explicit offsets (``assign``, never ``subscribe``), under a
throwaway group id, with automatic commits and offset storage off; nothing ever commits.
Each partition is done when a record at or past its end offset arrives, when its last
record in range was read, or when the consumer reaches the end of the log.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.backfill.errors import BackfillError, ReplayStalledError
from stream.backfill.ranges import PartitionRange
from stream.backfill.settings import ReplaySettings
from stream.errors import KafkaSetupError
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS

log = logging.getLogger(__name__)
_POLL_S = 0.5


def replay_consumer_config(settings: ReplaySettings, group_id: str) -> dict[str, Any]:
    return {
        **settings.librdkafka_config(),
        "group.id": group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "enable.partition.eof": True,
        "auto.offset.reset": "earliest",
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,  # a replay reads a backlog: no 1 s stalls
    }


class RangeReader:
    """The input topic as seen by a replay: its partitions, its time index, then its range."""

    def __init__(self, settings: ReplaySettings, timeout_s: float = 10.0) -> None:
        self._settings = settings
        self._topic = settings.input_topic
        self._timeout_s = timeout_s
        self.group_id = f"knnstream-replay-{uuid.uuid4().hex[:12]}"
        self._consumer: Consumer | None = None
        self._pending: dict[int, PartitionRange] = {}
        self._positions: dict[int, int] = {}
        self._ranges: dict[int, PartitionRange] = {}

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(replay_consumer_config(self._settings, self.group_id))
        return self._consumer

    def check_topics(self, topics: Sequence[str]) -> None:
        """Fail with one clear message when the broker is unreachable or a topic is missing."""
        try:
            metadata = self.consumer.list_topics(timeout=self._timeout_s)
        except KafkaException as exc:
            raise KafkaSetupError(f"cannot reach Kafka at {self._settings.bootstrap_servers}: {exc.args[0]}") from exc
        missing = [topic for topic in topics if topic not in metadata.topics]
        if missing:
            raise KafkaSetupError(f"missing topic(s) {', '.join(missing)} on {self._settings.bootstrap_servers}")

    def partitions(self) -> list[int]:
        metadata = self.consumer.list_topics(self._topic, timeout=self._timeout_s)
        return sorted(metadata.topics[self._topic].partitions)

    def watermarks(self, partition: int) -> tuple[int, int]:
        low, high = self.consumer.get_watermark_offsets(
            TopicPartition(self._topic, partition), timeout=self._timeout_s, cached=False
        )
        return int(low), int(high)

    def offsets_for_time(self, partitions: Sequence[int], time_ms: int) -> dict[int, int | None]:
        """Per partition, the first offset timed at or after ``time_ms``; None when there is none."""
        wanted = [TopicPartition(self._topic, partition, time_ms) for partition in partitions]
        found = self.consumer.offsets_for_times(wanted, timeout=self._timeout_s)
        return {tp.partition: (tp.offset if tp.offset >= 0 else None) for tp in found}

    def read(self, ranges: Sequence[PartitionRange], max_records: int, idle_timeout_s: float) -> Iterator[list[Any]]:
        """Batches of the records in range, in offset order per partition, until every range is done."""
        self._ranges = {r.partition: r for r in ranges}
        self._pending = {r.partition: r for r in ranges if r.size > 0}
        self._positions = {r.partition: r.start for r in ranges}
        if not self._pending:
            return
        self.consumer.assign([TopicPartition(self._topic, r.partition, r.start) for r in self._pending.values()])
        last_news = time.monotonic()
        while self._pending:
            pending_before = len(self._pending)
            batch = self._in_range(self.consumer.consume(num_messages=max_records, timeout=_POLL_S))
            if batch or len(self._pending) < pending_before:
                last_news = time.monotonic()
            elif time.monotonic() - last_news > idle_timeout_s:
                raise ReplayStalledError(
                    f"no records for {idle_timeout_s:.0f} s before partition(s) {sorted(self._pending)} reached"
                    f" their end offsets; is {self._settings.bootstrap_servers} reachable?"
                )
            if batch:
                yield batch

    def offsets_done(self) -> int:
        """Offsets of the ranges read so far (a finished partition counts its whole range)."""
        return sum(self._positions[p] - r.start for p, r in self._ranges.items())

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()  # automatic commits are off: closing commits nothing
            self._consumer = None

    def _in_range(self, messages: Sequence[Any]) -> list[Any]:
        kept = []
        for message in messages:
            partition = message.partition()
            if message.error() is not None:
                self._on_error(message)
            elif partition in self._pending:
                end = self._pending[partition].end
                if message.offset() < end:
                    kept.append(message)
                    self._positions[partition] = message.offset() + 1
                if message.offset() >= end - 1:
                    self._finish(partition)
        return kept

    def _on_error(self, message: Any) -> None:
        error = message.error()
        if error.code() == KafkaError._PARTITION_EOF:
            if message.partition() in self._pending:
                self._finish(message.partition())
            return
        if error.fatal():
            raise BackfillError(f"the consumer failed: {error.str()}")
        log.warning("consumer error partition=%s: %s", message.partition(), error.str())

    def _finish(self, partition: int) -> None:
        done = self._pending.pop(partition)
        self._positions[partition] = done.end
        self.consumer.pause([TopicPartition(self._topic, partition)])
        log.debug("partition %d done at offset %d", partition, done.end)
