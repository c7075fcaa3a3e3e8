"""The transport loop against the real broker: every record of the backlog comes out once, as a
JSON prediction keyed like it."""

from __future__ import annotations

import json
import uuid

import pytest
from confluent_kafka import Consumer

from stream.bench.transport import Course, transport_loop
from stream.demo.kafka_admin import temporary_topics
from stream.settings import BenchSettings

pytestmark = pytest.mark.kafka


def _read_all(bootstrap: str, topic: str, wanted: int) -> list[tuple[bytes, dict[str, object]]]:
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"g-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
    })  # fmt: skip
    consumer.subscribe([topic])
    read: list[tuple[bytes, dict[str, object]]] = []
    try:
        for _ in range(300):
            if len(read) >= wanted:
                break
            for message in consumer.consume(num_messages=10_000, timeout=0.2):
                if message.error() is None:
                    read.append((message.key(), json.loads(message.value())))
    finally:
        consumer.close()
    return read


@pytest.mark.parametrize("record_format", ["json", "float32"])
def test_the_loop_moves_every_record_once_and_commits(kafka_bootstrap: str, record_format: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    source, target = f"transport-in-{suffix}", f"transport-out-{suffix}"
    settings = BenchSettings(
        bootstrap_servers=kafka_bootstrap, records=3_000, features=6, batch_size=500, partitions=2,
        batch_max_wait_ms=50, format=record_format,
    )  # fmt: skip
    with temporary_topics(kafka_bootstrap, {source: 2, target: 2}):
        loop = transport_loop(settings, source, target)
        read = _read_all(kafka_bootstrap, target, settings.records)
        assert loop.rows_per_s > 0 and loop.cpu_s > 0
        assert 0 < loop.first_commit_s <= loop.course[-1][0], "the first batch commits before the last"
        assert loop.course[-1][1] == settings.records, "the course ends with every record moved"
        assert [moved for _, moved in loop.course] == sorted({moved for _, moved in loop.course})
        assert sorted(key for key, _ in read) == sorted(f"b{i}".encode() for i in range(settings.records))
        assert all(document["id"] == key.decode() and document["prediction"] == 0 for key, document in read)


def test_the_course_takes_the_batch_that_crosses_each_half_second_and_the_last() -> None:
    course = Course(every_s=0.5)
    for seconds, moved in [(0.12, 10), (0.4, 20), (0.61, 30), (0.9, 40), (1.7, 50), (1.8, 55)]:
        course.passed(seconds, moved)
    course.ended(1.8, 55)
    assert course.first_s == 0.12
    # 1.7 s crossed both 1.0 and 1.5: one sample, and the next mark is 2.0
    assert course.samples == ((0.61, 30), (1.7, 50), (1.8, 55))
