"""The Kafka producer of predictions and dead letters, with delivery tracking."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from stream.errors import DeliveryError
from stream.settings import ServeSettings
from stream.sink.encode import OutboundRecord

log = logging.getLogger(__name__)


def producer_config(settings: ServeSettings) -> dict[str, Any]:
    return {
        **settings.librdkafka_config(),
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        "message.max.bytes": max(1_048_576, settings.max_record_bytes + 65_536),
        "message.timeout.ms": int(settings.delivery_timeout_s * 1000),
        "queue.buffering.max.messages": settings.producer_queue_max_messages,
    }


def transactional_producer_config(settings: ServeSettings, transactional_id: str) -> dict[str, Any]:
    return {
        **producer_config(settings),
        "transactional.id": transactional_id,
        "transaction.timeout.ms": max(60_000, int(settings.delivery_timeout_s * 2000)),
    }


class _DeliveryTally:
    """Counts acknowledgements and failures of one batch's records."""

    def __init__(self) -> None:
        self.acknowledged = 0
        self.failures: list[str] = []

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        if error is None:
            self.acknowledged += 1
        else:
            self.failures.append(f"topic={message.topic()} partition={message.partition()}: {error.str()}")


class KafkaSink:
    """Produces a batch of records and returns once the broker acknowledged all of them."""

    def __init__(self, settings: ServeSettings) -> None:
        self._settings = settings
        self._producer: Producer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = Producer(producer_config(self._settings), logger=log)
        return self._producer

    def deliver(self, records: Sequence[OutboundRecord]) -> None:
        """Produce, flush, and raise :class:`DeliveryError` unless every record was acknowledged."""
        tally = _DeliveryTally()
        for record in records:
            self._produce(record, tally)
        deadline = time.monotonic() + self._settings.delivery_timeout_s + 5
        while tally.acknowledged + len(tally.failures) < len(records):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DeliveryError(
                    f"{len(records) - tally.acknowledged} of {len(records)} records unacknowledged"
                    f" after {self._settings.delivery_timeout_s:.0f} s"
                )
            self.producer.flush(remaining)
        if tally.failures:
            raise DeliveryError(f"{len(tally.failures)} records were not delivered, e.g. {tally.failures[0]}")

    def close(self, timeout_s: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout_s)
            self._producer = None

    def _produce(self, record: OutboundRecord, tally: _DeliveryTally) -> None:
        while True:
            try:
                self.producer.produce(
                    record.topic,
                    value=record.value,
                    key=record.key,
                    headers=list(record.headers),
                    on_delivery=tally,
                )
                return
            except BufferError:
                self.producer.poll(0.1)
