"""Promise 8: bad records are dead-lettered exactly, and a broken upstream trips the circuit breaker."""

from __future__ import annotations

import json
import signal
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from model_store import Manifest
from tests.helpers import N_FEATURES, blobs, consume_until, free_port, read_output, start_worker, values, wait_healthy
from tests.stream.guarantees.scenario import MODEL_REF

pytestmark = pytest.mark.kafka

POISON = {
    "invalid_json": b'{"id": "x", "features": [1, 2',
    "wrong_feature_count": json.dumps({"id": "short", "features": [1.0]}).encode(),
    "non_finite": b'{"id": "nan", "features": [NaN, 1, 2, 3, 4, 5]}',
    "empty_value": b"",
    "oversized": json.dumps({"id": "big", "features": [0.0] * N_FEATURES, "pad": "y" * 4000}).encode(),
}


def _serve(bootstrap: str, store: str, topics: dict[str, str], group: str, port: int, *extra: str) -> list[str]:
    return [
        "--bootstrap-servers", bootstrap, "--input-topic", topics["in"], "--output-topic", topics["out"],
        "--dlq-topic", topics["dlq"], "--group-id", group, "--model", MODEL_REF, "--store", store,
        "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--backend", "cpu", "--dask-workers", "1",
        "--batch-max-records", "200", "--max-record-bytes", "2000", *extra,
    ]  # fmt: skip


def _send(bootstrap: str, topic: str, values_in_order: list[tuple[bytes, bytes]]) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for key, value in values_in_order:
        producer.produce(topic, key=key, value=value)
        producer.poll(0)
    assert producer.flush(30) == 0


def _good(start: int, count: int) -> list[tuple[bytes, bytes]]:
    rows, _ = blobs(count, seed=start + 3)
    return [
        (f"g{start + i}".encode(), json.dumps({"id": f"g{start + i}", "features": row}).encode())
        for i, row in enumerate(rows.tolist())
    ]


def _committed(bootstrap: str, group: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        (position,) = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return max(0, position.offset)
    finally:
        consumer.close()


def test_each_kind_of_poison_pill_is_dead_lettered_and_every_good_record_predicted(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str, model: Manifest,
    record_property: Callable[[str, Any], None],
) -> None:  # fmt: skip
    topics = {"in": new_topic("in", 2), "out": new_topic("out", 2), "dlq": new_topic("dlq")}
    good = _good(0, 1_000)
    mixed = list(good)
    for position, (reason, value) in zip(range(50, 1_000, 190), POISON.items(), strict=False):
        mixed.insert(position, (f"bad-{reason}".encode(), value))
    _send(kafka_bootstrap, topics["in"], mixed)
    port = free_port()
    worker = start_worker(_serve(kafka_bootstrap, tmp_store, topics, group_id, port))
    try:
        wait_healthy(worker, port)
        outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= len(good))
        dead = consume_until(kafka_bootstrap, topics["dlq"], lambda got: len(got) >= len(POISON))
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
    assert code == 0, read_output(worker)[-3000:]
    predicted = sorted(p["id"] for p in values(outputs))
    assert predicted == sorted(key.decode() for key, _ in good)
    reasons = sorted(dict(m.headers())["knnstream.error.reason"].decode() for m in dead)
    assert reasons == sorted(POISON), "dead-lettered count equals injected count, one per kind"
    for message in dead:
        headers = dict(message.headers())
        assert headers["knnstream.source.topic"].decode() == topics["in"]
        assert {"knnstream.source.partition", "knnstream.source.offset", "knnstream.error.class"} <= set(headers)
        assert headers["knnstream.error.message"]
    figures = f"injected={len(POISON)} dead-lettered={len(dead)} good={len(good)} predicted={len(predicted)} lost=0"
    print(f"[guarantees] poison pills: {figures}")
    record_property("guarantee", f"poison pills: {figures}")


@pytest.mark.parametrize(
    ("limits", "bad_stream", "expected"),
    [
        (("--bad-run-limit", "50"), [(b"k", b"garbage")] * 80, "bad records in a row"),
        (("--bad-ratio-limit", "0.3", "--bad-ratio-window", "200"),
         [pair for i in range(150) for pair in ([(b"k", b"garbage")] if i % 2 else _good(10_000 + i, 1))],
         "of the last 200 records were bad"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("produce_on", ["workers", "driver"])
def test_a_broken_upstream_trips_the_breaker_and_nothing_past_the_trip_is_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str, tmp_store: str, model: Manifest,
    limits: tuple[str, ...], bad_stream: list[tuple[bytes, bytes]], expected: str, produce_on: str,
) -> None:  # fmt: skip
    """Nothing past the trip is committed or dead-lettered. Producing on the driver, nothing past it
    is published either; producing on the workers, the clean batch behind the tripping one may have
    been published already (at most the batches in flight, all of them predictions)."""
    topics = {"in": new_topic("in"), "out": new_topic("out"), "dlq": new_topic("dlq")}
    healthy = _good(0, 400)
    _send(kafka_bootstrap, topics["in"], healthy)
    port = free_port()
    worker = start_worker(
        _serve(kafka_bootstrap, tmp_store, topics, group_id, port, *limits, "--produce-on", produce_on)
    )
    try:
        wait_healthy(worker, port)
        consume_until(kafka_bootstrap, topics["out"], lambda got: len(got) >= len(healthy))
        _send(kafka_bootstrap, topics["in"], bad_stream + _good(1_000, 100))
        code = worker.wait(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
    log = read_output(worker)
    assert code == 1, log[-3000:]
    assert "CircuitOpenError" in log or expected in log
    last = log.strip().splitlines()[-1]
    assert expected in last, last
    assert "invalid_json (" in last and f") at {topics['in']}[" in last, "the trip names an example of the bad records"
    assert "--reset-offsets" in last, "and how to get past them"
    committed = _committed(kafka_bootstrap, group_id, topics["in"])
    total = len(healthy) + len(bad_stream) + 100
    assert len(healthy) <= committed < total, "the worker stopped before the end of the bad stream"
    dead = consume_until(kafka_bootstrap, topics["dlq"], lambda got: False, timeout_s=3)
    assert all(int(dict(m.headers())["knnstream.source.offset"]) < committed for m in dead), (
        "nothing past the committed offset was dead-lettered"
    )
    outputs = consume_until(kafka_bootstrap, topics["out"], lambda got: False, timeout_s=3)
    answered_past_the_trip = len(outputs) + len(dead) - committed
    if produce_on == "driver":
        assert answered_past_the_trip == 0, "exactly the committed records were answered"
    else:
        assert 0 <= answered_past_the_trip <= 2 * 200, "at most the batches in flight were published past the trip"
    print(
        f"[guarantees] breaker {expected!r}, produced on the {produce_on}: committed={committed} of {total},"
        f" dead-lettered={len(dead)}, published past the trip={answered_past_the_trip}"
    )
