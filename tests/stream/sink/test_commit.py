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


@pytest.mark.parametrize(
    ("error", "replaced"),
    [
        (KafkaError(KafkaError._TIMED_OUT, retriable=True), True),  # outcome unknown: a new producer settles it
        (KafkaError(KafkaError._INVALID_ARG), False),  # abortable: aborted, the producer kept
    ],
    ids=["unknown-outcome", "abortable"],
)
def test_a_failed_transaction_stays_invisible_and_the_next_one_commits(
    error: KafkaError, replaced: bool, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("txn")
    completer = _completer(kafka_bootstrap, f"txn-{uuid.uuid4().hex[:8]}")
    failed = completer.producer
    failed.begin_transaction()
    failed.produce(topic, value=b"failed", partition=0)
    failed.flush(10)
    completer._recover(failed, KafkaException(error))
    after = completer.producer
    assert (after is not failed) is replaced
    after.begin_transaction()
    after.produce(topic, value=b"after", partition=0)
    after.commit_transaction(10)
    completer.close()
    assert _committed_values(kafka_bootstrap, topic) == [b"after"]
