"""The benchmark's load and clock against the real broker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from stream.bench.load import _BATCH_SAMPLES as _SAMPLES
from stream.bench.load import (
    BatchStats,
    OutputReader,
    batch_stats,
    bench_records,
    latency_phase,
    settled_batch_totals,
)
from stream.demo.produce import FeatureRecord
from stream.errors import KnnStreamError
from stream.serve.metrics import Health, MetricsServer, WorkerMetrics

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


def test_a_slice_of_the_records_is_the_same_as_in_all_of_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("stream.bench.load._SKIP_ROWS", 7)  # the rows before the slice drawn in parts
    whole = bench_records(3, "b", 250)
    assert [record.id for record in whole] == [f"b{number}" for number in range(250)]
    assert bench_records(3, "b", 250, 100, 180) == whole[100:180]
    assert bench_records(3, "b", 250, 0, 250) == whole
    assert bench_records(3, "b", 250, 250, 250) == []
