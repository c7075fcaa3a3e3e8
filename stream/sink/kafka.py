"""The Kafka producer of predictions and dead letters, with delivery tracking."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream.errors import DeliveryError, KafkaSetupError
from stream.records.encode import Outbound, OutboundRecord, PredictionColumns
from stream.settings import ServeSettings

log = logging.getLogger(__name__)
Headers = list[tuple[str, str | bytes | None]]  # what Producer.produce takes


class DeliveryTimes(NamedTuple):
    """Seconds a delivery took: handing its records to the producer, then the broker's acknowledgements."""

    produce_s: float
    acknowledge_s: float


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


class KafkaSink:
    """Produces a batch of records and returns once the broker acknowledged all of them.

    The producer reports failed deliveries only (``delivery.report.only.error``): a batch is
    acknowledged when the producer's queue is empty and no failure was reported, so no Python
    callback runs for each of the records that went well. One batch at a time: a sink is not
    shared by threads that deliver concurrently.
    """

    def __init__(self, config: Mapping[str, Any], delivery_timeout_s: float) -> None:
        self._config = dict(config)
        self._delivery_timeout_s = delivery_timeout_s
        self._producer: Producer | None = None
        self._failures: list[str] = []

    @classmethod
    def for_settings(cls, settings: ServeSettings) -> KafkaSink:
        return cls(producer_config(settings), settings.delivery_timeout_s)

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            config = self._config | {"delivery.report.only.error": True, "on_delivery": self._on_failure}
            self._producer = Producer(config)
        return self._producer

    def start(self) -> None:
        """Build the producer now rather than with the first batch: it connects in the background
        and, idempotent, gets its producer id there. librdkafka asks for the id again 500 ms after
        a first try that found no broker connected yet, which a producer built with the first
        batch always does: that batch waited about 500 ms longer (measured against the local
        broker: 506 ms to the first acknowledgement, 5 ms without idempotence). A configuration
        librdkafka refuses fails here, as the worker starts, with :class:`KafkaSetupError`."""
        try:
            _ = self.producer
        except KafkaException as exc:
            raise KafkaSetupError(f"the producer's configuration was refused: {exc.args[0]}") from exc

    @property
    def started(self) -> bool:
        """Whether the producer is built (by :meth:`start` or the first delivery) and not closed."""
        return self._producer is not None

    def deliver(self, outbound: Outbound) -> DeliveryTimes:
        """Produce, flush, and raise :class:`DeliveryError` unless every record was acknowledged."""
        self._failures = []
        started = time.perf_counter()
        produce_outbound(self.producer, outbound)
        produced = time.perf_counter()
        self._await_acknowledgements(len(outbound))
        return DeliveryTimes(produced - started, time.perf_counter() - produced)

    def deliver_values(
        self, topic: str, keys: Sequence[bytes | None], values: Sequence[bytes], headers: Sequence[tuple[str, bytes]]
    ) -> DeliveryTimes:
        """:meth:`deliver` of one record per key and value (in step), all with the same headers."""
        return self.deliver(Outbound((PredictionColumns(topic, keys, values, tuple(headers)),)))

    def close(self, timeout_s: float = 10.0) -> None:
        if self._producer is not None:
            self._producer.flush(timeout_s)
            self._producer = None

    def _await_acknowledgements(self, produced: int) -> None:
        producer = self.producer
        deadline = time.monotonic() + self._delivery_timeout_s + 5
        while (waiting := producer.flush(max(0.0, deadline - time.monotonic()))) > 0:
            if time.monotonic() >= deadline:
                timeout_s = self._delivery_timeout_s
                raise DeliveryError(f"{waiting} of {produced} records unacknowledged after {timeout_s:.0f} s")
        if self._failures:
            raise DeliveryError(f"{len(self._failures)} records were not delivered, e.g. {self._failures[0]}")

    def _on_failure(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:
            self._failures.append(f"topic={message.topic()} partition={message.partition()}: {error.str()}")


def produce_outbound(producer: Producer, outbound: Outbound) -> None:
    """Hand every record of ``outbound`` to the producer (waiting for room when its queue is full)."""
    for part in outbound.predictions:
        produce_columns(producer, part)
    for record in outbound.records:
        produce_record(producer, record)


def produce_columns(producer: Producer, part: PredictionColumns) -> None:
    """The hot loop of every delivery: one call a record, its value and key passed by position,
    one headers list shared by every record."""
    topic = part.topic
    headers: Headers = list(part.headers)
    produce = producer.produce
    for key, value in zip(part.keys, part.values, strict=True):
        try:
            produce(topic, value, key, headers=headers)
        except BufferError:
            produce_value(producer, topic, key, value, headers)  # waits for room


def produce_record(producer: Producer, record: OutboundRecord) -> None:
    headers: Headers = list(record.headers)
    produce_value(producer, record.topic, record.key, record.value, headers)


def produce_value(producer: Producer, topic: str, key: bytes | None, value: bytes, headers: Headers) -> None:
    """Produce one record, waiting for room in the producer's queue when it is full."""
    while True:
        try:
            producer.produce(topic, value=value, key=key, headers=headers)
            return
        except BufferError:
            producer.poll(0.1)
