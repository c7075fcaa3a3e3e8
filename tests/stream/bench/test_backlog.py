"""The benchmark's backlog burst against the real broker: nothing arrives before it is released,
everything after, once, whichever sender sent it."""

from __future__ import annotations

import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition

from stream.bench.backlog import shares, start_burst
from stream.bench.load import bench_records
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


def _subscribed(bootstrap: str, topic: str) -> Consumer:
    """A consumer of ``topic`` from its start, in a group of its own."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.subscribe([topic])
    return consumer


@pytest.mark.kafka
def test_the_burst_sends_every_record_only_once_released(kafka_bootstrap: str) -> None:
    topic = f"burst-{uuid.uuid4().hex[:8]}"
    with temporary_topics(kafka_bootstrap, {topic: 2}):
        burst = start_burst(kafka_bootstrap, topic, 5_000, 4, "float32")
        consumer = _subscribed(kafka_bootstrap, topic)
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


def _keys_read(consumer: Consumer, wanted: int, timeout_s: float = 10.0) -> list[tuple[bytes, bytes]]:
    """(key, value) of the records read until ``wanted`` came or a poll of ``timeout_s`` brought none."""
    read: list[tuple[bytes, bytes]] = []
    while len(read) < wanted:
        messages = consumer.consume(num_messages=10_000, timeout=timeout_s)
        if not messages:
            break
        read += [(message.key(), message.value()) for message in messages if message.error() is None]
    return read


@pytest.mark.kafka
def test_a_burst_of_three_senders_sends_every_record_once_as_one_sender_would(kafka_bootstrap: str) -> None:
    topic, count = f"burst-{uuid.uuid4().hex[:8]}", 4_000
    with temporary_topics(kafka_bootstrap, {topic: 3}):
        burst = start_burst(kafka_bootstrap, topic, count, 4, "float32", senders=3)
        consumer = _subscribed(kafka_bootstrap, topic)
        try:
            burst.wait_ready(timeout_s=120)
            assert len(burst.senders) == 3
            assert _written(consumer, topic, 3) == 0  # every sender ready, none sent
            burst.release()
            read = _keys_read(consumer, wanted=count)
            assert burst.wait_sent(timeout_s=30) > 0
            assert burst.failure() is None
        finally:
            consumer.close()
            burst.close()
    assert len(read) == count
    expected = {record.key(): record.value("float32") for record in bench_records(4, "b", count)}
    assert dict(read) == expected  # each id once, with the features one sender of them all would send
    assert not any(sender.process.is_alive() for sender in burst.senders)


@pytest.mark.kafka
def test_a_sender_that_fails_fails_the_burst(kafka_bootstrap: str) -> None:
    topic = f"burst-{uuid.uuid4().hex[:8]}"
    with temporary_topics(kafka_bootstrap, {topic: 2}):
        burst = start_burst(kafka_bootstrap, topic, 300, 4, "float32", senders=3)
        try:
            burst.wait_ready(timeout_s=120)
            assert burst.failure() is None
            burst.senders[1].process.kill()
            burst.senders[1].process.join(10)
            failure = burst.failure()
            assert failure is not None and "sender 2 of 3" in str(failure)
            burst.release()
            with pytest.raises(KnnStreamError, match="burst failed"):
                burst.wait_sent(timeout_s=30)
        finally:
            burst.close()


def test_the_records_are_shared_out_evenly_among_at_most_one_sender_each() -> None:
    assert shares(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert shares(10, 1) == [(0, 10)]
    assert shares(2, 4) == [(0, 1), (1, 2)]  # no sender without records
