"""The sink's producer against the real broker: started before the first batch, it connects and
gets its idempotent producer id without a record sent."""

from __future__ import annotations

import json
import time

from stream.sink.kafka import KafkaSink


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
    producer = sink.producer
    sink.start()
    assert sink.producer is producer
    sink.close()
