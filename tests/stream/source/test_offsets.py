"""Offset commits against the real broker: sent without waiting, confirmed by the broker's answer,
at most one unanswered, a failed one sent again, and nothing delivered left uncommitted on close."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import NamedTuple

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from stream.settings import ServeSettings
from stream.source.kafka import KafkaSource
from stream.source.offsets import OffsetCommits

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for number in range(count):
        producer.produce(topic, value=str(number).encode(), partition=0)
    assert producer.flush(30) == 0


def _committed(bootstrap: str, group: str, topic: str) -> int:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (position,) = reader.committed([TopicPartition(topic, 0)], timeout=10)
        return int(position.offset)
    finally:
        reader.close()


class Assigned(NamedTuple):
    consumer: Consumer
    topic: str
    commits: OffsetCommits


@pytest.fixture
def assigned(kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str) -> Iterator[Assigned]:
    """A consumer of a fresh one-partition topic, with the partition assigned and the
    commits' answers served to an :class:`OffsetCommits` at every poll."""
    topic = new_topic("offsets")
    _produce(kafka_bootstrap, topic, 10)
    commits = OffsetCommits()
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "on_commit": commits.on_commit,
        }
    )
    consumer.subscribe([topic])
    deadline = time.monotonic() + 30
    while not consumer.assignment():
        assert time.monotonic() < deadline, "no partition assigned within 30 s"
        consumer.poll(0.1)
    yield Assigned(consumer, topic, commits)
    consumer.close()


def _poll_until(consumer: Consumer, done: Callable[[], bool], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the broker did not answer within 30 s"
        consumer.poll(0.05)


def test_a_commit_is_sent_without_waiting_and_confirmed_by_the_brokers_answer(
    assigned: Assigned, kafka_bootstrap: str, group_id: str
) -> None:
    consumer, topic, commits = assigned
    commits.record([TopicPartition(topic, 0, 4)])
    commits.commit_async(consumer, [(topic, 0)])
    assert commits.unconfirmed([(topic, 0)]) == [TopicPartition(topic, 0, 4)], "confirmed before any answer"
    _poll_until(consumer, lambda: not commits.unconfirmed([(topic, 0)]))
    assert _committed(kafka_bootstrap, group_id, topic) == 4
    assert not commits.retry_due()


def test_while_a_commit_is_unanswered_the_next_one_waits_for_the_broker(
    assigned: Assigned, kafka_bootstrap: str, group_id: str
) -> None:
    consumer, topic, commits = assigned
    commits.record([TopicPartition(topic, 0, 3)])
    commits.commit_async(consumer, [(topic, 0)])  # no poll: its answer is not served yet
    commits.record([TopicPartition(topic, 0, 7)])
    commits.commit_async(consumer, [(topic, 0)])
    assert commits.unconfirmed([(topic, 0)]) == [], "the second commit returned before the broker had it"
    assert _committed(kafka_bootstrap, group_id, topic) == 7


def test_a_refused_commit_is_reported_and_owed_again(assigned: Assigned) -> None:
    consumer, topic, commits = assigned
    missing = f"{topic}-missing"
    commits.record([TopicPartition(missing, 0, 5)])
    commits.commit_async(consumer, [(missing, 0)])
    _poll_until(consumer, commits.retry_due)
    assert commits.unconfirmed([(missing, 0)]) == [TopicPartition(missing, 0, 5)]


def test_offsets_of_a_partition_that_moved_away_are_forgotten() -> None:
    commits = OffsetCommits()
    commits.record([TopicPartition("t", 0, 6), TopicPartition("t", 1, 2)])
    commits.forget([("t", 0)])
    assert commits.unconfirmed([("t", 0), ("t", 1)]) == [TopicPartition("t", 1, 2)]


def test_a_later_batch_of_a_partition_moves_its_offset_forward_only() -> None:
    commits = OffsetCommits()
    commits.record([TopicPartition("t", 0, 9)])
    commits.record([TopicPartition("t", 0, 4)])  # a rewound partition's earlier batch, delivered again
    assert commits.unconfirmed([("t", 0)]) == [TopicPartition("t", 0, 9)]


def test_closing_the_source_leaves_no_delivered_offset_uncommitted(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic("offsets")
    _produce(kafka_bootstrap, topic, 30)
    settings = ServeSettings(
        bootstrap_servers=kafka_bootstrap,
        input_topic=topic,
        group_id=group_id,
        model="m@production",
        batch_max_records=30,
        batch_max_wait_ms=2_000,
    )
    source = KafkaSource(settings)
    try:
        batch = None
        for _ in range(50):
            batch = source.next_batch()
            if batch is not None:
                break
        assert batch is not None and len(batch) == 30
        source.commit(batch)  # sent; its answer is served by a later poll, and none comes
    finally:
        source.close()
    assert _committed(kafka_bootstrap, group_id, topic) == 30
