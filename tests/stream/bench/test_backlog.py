"""The benchmark's backlog burst against the real broker: nothing arrives before it is released,
everything after."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.bench.backlog import start_burst
from stream.demo.kafka_admin import temporary_topics
from stream.errors import KnnStreamError


def _read(consumer: Consumer, timeout_s: float, wanted: int) -> int:
    """Records read until ``wanted`` came or a poll of ``timeout_s`` brought none."""
    count = 0
    while count < wanted:
        messages = consumer.consume(num_messages=10_000, timeout=timeout_s)
        if not messages:
            break
        count += sum(1 for message in messages if message.error() is None)
    return count


def _written(consumer: Consumer, topic: str, partitions: int) -> int:
    """Records in the topic, by the partitions' high watermarks."""
    marks = [consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in range(partitions)]
    return sum(high for _, high in marks)


@pytest.mark.kafka
def test_the_burst_sends_every_record_only_once_released(kafka_bootstrap: str) -> None:
    topic = f"burst-{uuid.uuid4().hex[:8]}"
    with temporary_topics(kafka_bootstrap, {topic: 2}):
        burst = start_burst(kafka_bootstrap, topic, 5_000, 4, "float32")
        consumer = Consumer({
            "bootstrap.servers": kafka_bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
        })  # fmt: skip
        consumer.subscribe([topic])
        try:
            burst.wait_ready(timeout_s=120)
            assert _written(consumer, topic, 2) == 0  # ready: encoded and connected, nothing sent
            burst.release()
            assert _read(consumer, timeout_s=10.0, wanted=5_000) == 5_000
            assert _written(consumer, topic, 2) == 5_000
            assert burst.wait_sent(timeout_s=30) > 0
            assert burst.failure() is None
        finally:
            consumer.close()
            burst.close()


def test_a_burst_that_cannot_start_says_so() -> None:
    burst = start_burst("127.0.0.1:1", "nowhere", 10, 4, "float32", connect_timeout_s=2)  # no broker: no metadata
    try:
        with pytest.raises(KnnStreamError, match="burst failed"):
            burst.wait_ready(timeout_s=120)
    finally:
        burst.close()
