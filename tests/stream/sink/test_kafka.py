"""The sink's producer against the real broker: started before the first batch, it connects and
gets its idempotent producer id without a record sent."""

from __future__ import annotations

import json
import time

import pytest
from confluent_kafka import Producer

from stream.errors import KafkaSetupError
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
