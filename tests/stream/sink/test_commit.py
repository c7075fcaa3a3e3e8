"""The exactly-once completer: how a failed transaction is recovered, against the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.settings import ServeSettings
from stream.sink.commit import ExactlyOnce, _abortable
from stream.sink.kafka import transactional_producer_config

pytestmark = pytest.mark.kafka


@pytest.mark.parametrize(
    ("error", "abortable"),
    [
        (KafkaError(KafkaError._TIMED_OUT, retriable=True), False),  # a commit may be under way
        (KafkaError(KafkaError._FATAL, fatal=True), False),
        (KafkaError(KafkaError._INVALID_ARG), True),  # e.g. produce refused a record
        (KafkaError(KafkaError._TIMED_OUT, retriable=True, txn_requires_abort=True), True),
    ],
)
def test_only_a_transaction_that_can_be_aborted_is(error: KafkaError, abortable: bool) -> None:
    assert _abortable(error) is abortable


def _completer(bootstrap: str, transactional_id: str) -> ExactlyOnce:
    settings = ServeSettings(bootstrap_servers=bootstrap, model="m@production", delivery_timeout_s=10)
    return ExactlyOnce(transactional_producer_config(settings, transactional_id), lambda: None, 10)


def _committed_values(bootstrap: str, topic: str) -> list[bytes]:
    reader = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"reader-{uuid.uuid4().hex}",
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
        }
    )
    reader.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []
    try:
        while True:
            message = reader.poll(10)
            assert message is not None, "no end of partition within 10 s"
            error = message.error()
            if error is not None:
                assert error.code() == KafkaError._PARTITION_EOF, error
                return values
            values.append(message.value() or b"")
    finally:
        reader.close()


def test_an_open_transaction_of_unknown_outcome_is_settled_by_a_new_producer(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("txn")
    completer = _completer(kafka_bootstrap, f"txn-{uuid.uuid4().hex[:8]}")
    old = completer.producer
    old.begin_transaction()
    old.produce(topic, value=b"in doubt", partition=0)
    old.flush(10)
    completer._recover(old, KafkaException(KafkaError(KafkaError._TIMED_OUT, retriable=True)))
    new = completer.producer
    assert new is not old
    new.begin_transaction()
    new.produce(topic, value=b"after", partition=0)
    new.commit_transaction(10)
    completer.close()
    assert _committed_values(kafka_bootstrap, topic) == [b"after"]


def test_an_abortable_transaction_is_aborted_and_the_producer_kept(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("txn")
    completer = _completer(kafka_bootstrap, f"txn-{uuid.uuid4().hex[:8]}")
    producer = completer.producer
    producer.begin_transaction()
    producer.produce(topic, value=b"aborted", partition=0)
    completer._recover(producer, KafkaException(KafkaError(KafkaError._INVALID_ARG)))
    assert completer.producer is producer
    producer.begin_transaction()
    producer.produce(topic, value=b"kept", partition=0)
    producer.commit_transaction(10)
    completer.close()
    assert _committed_values(kafka_bootstrap, topic) == [b"kept"]
