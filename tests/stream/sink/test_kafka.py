"""The sink's producer against the real broker: started before the first batch, it connects and
gets its idempotent producer id without a record sent."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Message, Producer

from stream.errors import KafkaSetupError
from stream.records.encode import Outbound, OutboundRecord, PredictionColumns
from stream.sink.commit import AtLeastOnce
from stream.sink.kafka import KafkaSink

pytestmark = pytest.mark.kafka


def test_a_started_sink_gets_its_producer_id_before_any_record(kafka_bootstrap: str) -> None:
    states: list[str] = []
    config = {
        "bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "statistics.interval.ms": 50,
        "stats_cb": lambda stats: states.append(json.loads(stats)["eos"]["idemp_state"]),
    }  # fmt: skip
    sink = KafkaSink(config, delivery_timeout_s=10)
    assert not sink.started
    sink.start()
    assert sink.started
    deadline = time.monotonic() + 30
    while "Assigned" not in states:
        assert time.monotonic() < deadline, f"no producer id within 30 s: {states[-3:]}"
        sink.producer.poll(0.05)  # serves the statistics; nothing was produced
    sink.close()
    assert not sink.started


def test_starting_twice_keeps_one_producer(kafka_bootstrap: str) -> None:
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, delivery_timeout_s=10)
    sink.start()
    assert sink.started  # built by start, before any delivery
    producer = sink.producer
    sink.start()
    assert sink.producer is producer
    sink.close()


def test_an_at_least_once_completer_starts_its_producer_with_the_pipeline(kafka_bootstrap: str) -> None:
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, delivery_timeout_s=10)
    completer = AtLeastOnce(sink, commit=lambda _batch: None)
    completer.start()
    assert isinstance(sink.producer, Producer) and sink.started
    completer.close()


def test_a_configuration_librdkafka_refuses_fails_the_start_with_a_setup_error() -> None:
    sink = KafkaSink({"bootstrap.servers": "127.0.0.1:1", "acks": "sometimes"}, delivery_timeout_s=10)
    with pytest.raises(KafkaSetupError, match="configuration was refused"):
        sink.start()


def test_a_delivery_produces_its_prediction_columns_then_its_records_each_once(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    predictions, dead_letters = new_topic("out"), new_topic("dlq")
    columns = PredictionColumns(predictions, [b"k0", None, b"k2"], [b"a", b"b", b"c"], (("version", b"v1"),))
    letter = OutboundRecord(dead_letters, b"bad", b"raw", [("reason", b"not_json")], None)
    sink = KafkaSink({"bootstrap.servers": kafka_bootstrap}, delivery_timeout_s=10)
    sink.deliver(Outbound((columns,), (letter,)))
    sink.close()
    read = _read(kafka_bootstrap, [predictions, dead_letters], 4)
    assert [(m.topic(), m.key(), m.value()) for m in read if m.topic() == predictions] == [
        (predictions, b"k0", b"a"), (predictions, None, b"b"), (predictions, b"k2", b"c"),
    ]  # fmt: skip
    assert all(m.headers() == [("version", b"v1")] for m in read if m.topic() == predictions)
    [dead] = [m for m in read if m.topic() == dead_letters]
    assert (dead.key(), dead.value(), dead.headers()) == (b"bad", b"raw", [("reason", b"not_json")])


def _read(bootstrap: str, topics: list[str], count: int) -> list[Message]:
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest"}
    )
    consumer.subscribe(topics)
    read: list[Message] = []
    deadline = time.monotonic() + 30
    while len(read) < count and time.monotonic() < deadline:
        read += [message for message in consumer.consume(count, timeout=0.5) if message.error() is None]
    consumer.close()
    assert len(read) == count, f"{len(read)} of {count} records read within 30 s"
    return read
