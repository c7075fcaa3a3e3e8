"""The benchmark's load and clock against the real broker."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from stream.bench.load import _BATCH_SAMPLES as _SAMPLES
from stream.bench.load import (
    BatchStats,
    OutputReader,
    batch_stats,
    bench_records,
    latency_phase,
    reader_config,
    settled_batch_totals,
    take_in,
)
from stream.demo.produce import FeatureRecord
from stream.errors import KnnStreamError
from stream.serve.metrics import Health, MetricsServer, WorkerMetrics
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS

pytestmark = pytest.mark.kafka


def test_a_latency_phase_whose_records_cannot_be_sent_fails_with_the_senders_error(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Not after the reader's 600 s wait for predictions that cannot come."""
    reader = OutputReader(kafka_bootstrap, new_topic("out"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 2_000})
    try:
        with pytest.raises(KnnStreamError, match="could not be sent"):
            latency_phase(producer, "no such topic!", reader, [FeatureRecord("a", [1.0])], 100.0)
    finally:
        reader.close()


def test_the_reader_counts_each_keyed_prediction_once_and_skips_unkeyed_ones(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("out")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key in (b"a", b"b", b"a", None, "é".encode()):
        producer.produce(topic, value=b'{"prediction": 1}', key=key)
    producer.flush(10)
    reader = OutputReader(kafka_bootstrap, topic)
    try:
        reader.wait_until_assigned(timeout_s=60)
        reader.wait_for(3, timeout_s=60)
        assert sorted(reader.received_at) == ["a", "b", "é"]
        with pytest.raises(KnnStreamError, match="only 3 of 4 predictions"):
            reader.wait_for(4, timeout_s=2)
    finally:
        reader.close()


def test_batch_stats_are_the_means_of_the_batches_between_two_scrapes() -> None:
    before = dict.fromkeys(_SAMPLES, 0.0) | {
        "knnstream_batch_size_records_count": 3.0,
        "knnstream_batch_latency_seconds_count": 1.0,
    }
    after = {
        "knnstream_batch_size_records_count": 7.0,  # 4 batches started
        "knnstream_batch_size_records_sum": 400.0,
        "knnstream_batch_latency_seconds_count": 4.0,  # 3 committed: one was rewound
        "knnstream_batch_latency_seconds_sum": 0.75,
        "knnstream_predict_duration_seconds_count": 5.0,  # one batch's parts were refused: predicted twice
        "knnstream_predict_duration_seconds_sum": 0.25,
    }
    assert batch_stats(before, after) == BatchStats(4, 100.0, 250.0, 50.0)
    assert batch_stats(after, after) == BatchStats(0, 0.0, 0.0, 0.0)


def _served(metrics: WorkerMetrics) -> MetricsServer:
    server = MetricsServer(metrics, Health(stale_after_s=60), "127.0.0.1", 0)
    server.start()
    return server


def test_the_batch_totals_are_read_once_the_worker_is_idle() -> None:
    metrics = WorkerMetrics()
    metrics.batch_size.observe(100)
    metrics.batch_latency.observe(0.2)
    server = _served(metrics)
    try:
        totals = settled_batch_totals([server.port], timeout_s=10)
    finally:
        server.stop()
    assert totals["knnstream_batch_size_records_count"] == 1
    assert totals["knnstream_batch_latency_seconds_sum"] == pytest.approx(0.2)


def test_a_worker_with_a_batch_in_flight_is_waited_for_and_then_given_up_on() -> None:
    metrics = WorkerMetrics()
    metrics.in_flight.inc()
    server = _served(metrics)
    try:
        with pytest.raises(KnnStreamError, match="1 in flight"):
            settled_batch_totals([server.port], timeout_s=0.3)
    finally:
        server.stop()


def test_the_reader_of_predictions_backs_off_briefly_when_its_prefetch_is_full(kafka_bootstrap: str) -> None:
    config = reader_config(kafka_bootstrap)
    assert config["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS < 1000
    assert reader_config(kafka_bootstrap)["group.id"] != config["group.id"]  # each reader reads every prediction
    Consumer(config).close()  # librdkafka knows the property and accepts the value


def _produce_keys(bootstrap: str, topic: str, keys: list[str], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for number, key in enumerate(keys):
        producer.produce(topic, value=b'{"prediction": 1}', key=key.encode(), partition=number % partitions)
    producer.flush(10)


@pytest.mark.parametrize(("processes", "partitions"), [(2, 4), (3, 4), (3, 2)])
def test_a_reader_of_several_processes_sees_every_id_once_at_its_first_arrival(
    kafka_bootstrap: str, new_topic: Callable[..., str], processes: int, partitions: int
) -> None:
    """One group: the topic's partitions shared out among the children (with more children than
    partitions, some hold none)."""
    topic = new_topic("out", partitions=partitions)
    reader = OutputReader(kafka_bootstrap, topic, processes=processes)
    try:
        reader.wait_until_assigned(timeout_s=60)
        sent_at = time.monotonic()
        keys = [f"p{number}" for number in range(3_000)]
        _produce_keys(kafka_bootstrap, topic, keys + keys[:10], partitions)  # ten ids twice
        reader.wait_for(len(keys), timeout_s=60)
        with pytest.raises(KnnStreamError, match=f"only {len(keys)} of {len(keys) + 1}"):
            reader.wait_for(len(keys) + 1, timeout_s=2)
        assert sorted(reader.received_at) == sorted(keys)
        assert sent_at < min(reader.received_at.values()) <= max(reader.received_at.values()) < time.monotonic()
        reader.forget()
        assert reader.count == 0
        _produce_keys(kafka_bootstrap, topic, ["after"], partitions)
        reader.wait_for(1, timeout_s=60)
        assert list(reader.received_at) == ["after"]
        assert reader.cpu_seconds() > 0
    finally:
        reader.close()
    assert [child.exitcode for child in reader._children] == [0] * processes  # stopped and joined


def test_a_reader_whose_process_ends_says_so(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    reader = OutputReader(kafka_bootstrap, new_topic("out", partitions=2), processes=2)
    try:
        reader.wait_until_assigned(timeout_s=60)
        reader._children[1].kill()
        with pytest.raises(KnnStreamError, match="reader 1 ended"):
            reader.wait_for(1, timeout_s=30)
    finally:
        reader.close()


def test_an_id_keeps_its_earliest_arrival() -> None:
    received: dict[str, float] = {}
    take_in(received, 2.0, ["a"])
    take_in(received, 1.0, ["a", "b"])  # read again in another child, taken in later
    take_in(received, 3.0, ["a", "b", "c"])
    assert received == {"a": 1.0, "b": 1.0, "c": 3.0}


def test_a_slice_of_the_records_is_the_same_as_in_all_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stream.bench.load._SKIP_ROWS", 7)  # the rows before the slice drawn in parts
    whole = bench_records(3, "b", 250)
    assert [record.id for record in whole] == [f"b{number}" for number in range(250)]
    assert bench_records(3, "b", 250, 100, 180) == whole[100:180]
    assert bench_records(3, "b", 250, 0, 250) == whole
    assert bench_records(3, "b", 250, 250, 250) == []
