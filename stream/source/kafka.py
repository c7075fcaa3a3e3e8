"""The long-lived Kafka consumer of feature records.

One consumer for the life of the worker (built on first use, never in a constructor);
automatic commits and automatic offset storage are off: offsets are committed explicitly,
by the pipeline, after the predictions are acknowledged.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException

from stream.batching.microbatch import MicroBatch, collect_batch
from stream.errors import KafkaSetupError
from stream.settings import ServeSettings

log = logging.getLogger(__name__)


def consumer_config(settings: ServeSettings) -> dict[str, Any]:
    return {
        **settings.librdkafka_config(),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": 300_000,
    }


class KafkaSource:
    """Micro-batches of the input topic, explicit commits, rewinds after a failed delivery."""

    def __init__(self, settings: ServeSettings) -> None:
        self._settings = settings
        self._consumer: Consumer | None = None

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self._settings), logger=log)
            self._consumer.subscribe([self._settings.input_topic])
        return self._consumer

    def check_topics(self, topics: Sequence[str], timeout_s: float = 10.0) -> None:
        """Fail with one clear message when the broker is unreachable or a topic is missing."""
        try:
            metadata = self.consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaSetupError(f"cannot reach Kafka at {self._settings.bootstrap_servers}: {exc.args[0]}") from exc
        missing = [topic for topic in topics if topic not in metadata.topics]
        if missing:
            raise KafkaSetupError(f"missing topic(s) {', '.join(missing)} on {self._settings.bootstrap_servers}")

    def next_batch(self) -> MicroBatch | None:
        return collect_batch(
            self._poll,
            self._settings.batch_max_records,
            self._settings.batch_max_wait_ms / 1000,
        )

    def commit(self, batch: MicroBatch) -> None:
        """Synchronously commit the offsets after every record of the batch."""
        self.consumer.commit(offsets=batch.next_offsets(), asynchronous=False)

    def rewind(self, batch: MicroBatch) -> None:
        """Seek back to the batch's first offsets so its records are consumed again."""
        for position in batch.first_offsets():
            try:
                self.consumer.seek(position)
            except KafkaException as exc:
                log.warning(
                    "cannot rewind topic=%s partition=%d offset=%d (partition moved away?): %s",
                    position.topic,
                    position.partition,
                    position.offset,
                    exc,
                )

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None

    def _poll(self, max_messages: int, timeout_s: float) -> list[Any]:
        messages = self.consumer.consume(num_messages=max_messages, timeout=timeout_s)
        return [message for message in messages if not _is_error(message)]


def _is_error(message: Any) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning(
            "consumer error topic=%s partition=%s offset=%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error,
        )
    return True
