"""WorkerMetrics: lag from librdkafka statistics, GPU memory per Dask worker, build info, /metrics."""

from __future__ import annotations

import gc
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from distributed import Client, LocalCluster
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from stream.predict.gpu_memory import GpuMemoryMonitor, GpuMemorySample, read_device_memory, sample_workers
from stream.serve.metrics import LATENCY_BUCKETS, LATENCY_SLO_S, Health, MetricsServer, WorkerMetrics
from stream.settings import ServeSettings
from stream.source.consumer import consumer_config
from stream.source.lag import PartitionLag, partition_lags

PROMETHEUS_INSTALL_HINT = "run `bash deploy/install-prometheus.sh` (CI runs it before the tests)"


def _partition(number: int, **fields: Any) -> dict[str, Any]:
    base = {
        "partition": number,
        "desired": True,
        "lo_offset": 0,
        "hi_offset": 100,
        "ls_offset": 100,
        "committed_offset": 40,
        "consumer_lag": 60,
    }
    return {**base, **fields}


def _stats(*partitions: dict[str, Any], topic: str = "features", kind: str = "consumer", name: str = "c1") -> str:
    return json.dumps(
        {"name": name, "type": kind, "topics": {topic: {"partitions": {str(p["partition"]): p for p in partitions}}}}
    )


def _samples(metrics: WorkerMetrics, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    text = generate_latest(metrics.registry).decode()
    return {
        tuple(sorted(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    }


def _lags(metrics: WorkerMetrics) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["topic"], dict(labels)["partition"]): value
        for labels, value in _samples(metrics, "knnstream_consumer_lag_records").items()
    }


def test_partition_lags_reads_assigned_partitions_only() -> None:
    stats = json.loads(
        _stats(
            _partition(0),
            _partition(1, consumer_lag=-1, committed_offset=-1001, lo_offset=10, ls_offset=70),  # nothing committed
            _partition(2, desired=False),  # revoked
            _partition(-1),  # librdkafka's internal unassigned partition
            _partition(3, hi_offset=-1001, ls_offset=-1001, consumer_lag=-1),  # end not known yet
        )
    )
    assert sorted(partition_lags(stats), key=lambda lag: lag.partition) == [
        PartitionLag("features", 0, 60),
        PartitionLag("features", 1, 60),
    ]
    assert partition_lags({**stats, "type": "producer"}) == []


def test_lag_gauge_follows_assignment_and_ignores_bad_statistics() -> None:
    metrics = WorkerMetrics()
    metrics.observe_consumer_stats(_stats(_partition(0), _partition(1, consumer_lag=5)))
    assert _lags(metrics) == {("features", "0"): 60.0, ("features", "1"): 5.0}

    metrics.observe_consumer_stats(_stats(_partition(1, consumer_lag=0), _partition(0, desired=False)))
    assert _lags(metrics) == {("features", "1"): 0.0}, "a revoked partition's series is removed"

    for unreadable in ("not json", "[]", json.dumps({"type": "consumer", "topics": {"t": {"partitions": {"0": 1}}}})):
        metrics.observe_consumer_stats(unreadable)  # must not raise: it runs inside the consumer's poll
    assert _lags(metrics) == {("features", "1"): 0.0}


def test_lag_series_of_two_consumers_do_not_remove_each_other() -> None:
    metrics = WorkerMetrics()
    metrics.observe_consumer_stats(_stats(_partition(0), name="a"))
    metrics.observe_consumer_stats(_stats(_partition(1), name="b"))
    metrics.observe_consumer_stats(_stats(name="a"))  # a lost its partition, b still owns 1
    assert _lags(metrics) == {("features", "1"): 60.0}


def test_lag_from_a_real_consumer_through_consumer_config(
    kafka_bootstrap: str, new_topic: Callable[..., str], group_id: str
) -> None:
    topic = new_topic("lag", 2)
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for i in range(10):
        producer.produce(topic, value=b"{}", partition=i % 2)
    assert producer.flush(30) == 0

    metrics = WorkerMetrics()
    settings = ServeSettings(
        model="m@production",
        bootstrap_servers=kafka_bootstrap,
        group_id=group_id,
        input_topic=topic,
        statistics_interval_ms=100,
    )
    consumer = Consumer(consumer_config(settings, metrics.observe_consumer_stats))
    consumer.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while len(consumer.assignment()) < 2 and time.monotonic() < deadline:
            consumer.consume(num_messages=100, timeout=0.2)
        assert len(consumer.assignment()) == 2, "no assignment in time"
        # Partition 0 processed up to offset 3 of 5; partition 1 untouched (nothing committed).
        consumer.commit(offsets=[TopicPartition(topic, 0, 3)], asynchronous=False)
        expected = {(topic, "0"): 2.0, (topic, "1"): 5.0}
        while _lags(metrics) != expected and time.monotonic() < deadline:
            consumer.consume(num_messages=100, timeout=0.2)
        assert _lags(metrics) == expected
    finally:
        consumer.close()


def test_gpu_memory_gauges_per_worker_and_stale_workers_removed() -> None:
    metrics = WorkerMetrics()
    metrics.observe_gpu_memory([GpuMemorySample("0", "0", 1_000, 8_000), GpuMemorySample("1", "1", 2_000, 8_000)])
    used = _samples(metrics, "knnstream_gpu_memory_used_bytes")
    assert used == {(("device", "0"), ("worker", "0")): 1_000.0, (("device", "1"), ("worker", "1")): 2_000.0}
    metrics.observe_gpu_memory([GpuMemorySample("1", "1", 3_000, 8_000)])
    assert _samples(metrics, "knnstream_gpu_memory_used_bytes") == {(("device", "1"), ("worker", "1")): 3_000.0}
    assert _samples(metrics, "knnstream_gpu_memory_total_bytes") == {(("device", "1"), ("worker", "1")): 8_000.0}


def fake_gpu_reader(dask_worker: Any = None) -> GpuMemorySample | None:
    """Stands in for NVML on a CPU host: one GPU per worker, named like dask-cuda's workers."""
    return GpuMemorySample(str(dask_worker.name), str(dask_worker.name), 512 * 2**20, 80 * 2**30)


def test_gpu_memory_monitor_samples_every_dask_worker() -> None:
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        metrics = WorkerMetrics()
        monitor = GpuMemoryMonitor(client, metrics.observe_gpu_memory, interval_s=0.05, read=fake_gpu_reader)
        monitor.start()
        try:
            deadline = time.monotonic() + 30
            while len(_samples(metrics, "knnstream_gpu_memory_used_bytes")) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            monitor.stop()
        assert not monitor._thread.is_alive()
        used = _samples(metrics, "knnstream_gpu_memory_used_bytes")
        assert sorted(dict(labels)["worker"] for labels in used) == ["0", "1"]
        assert set(used.values()) == {512.0 * 2**20}
        if read_device_memory() is None:  # a CPU host: the real reader answers None, nothing is exported
            assert sample_workers(client) == []


def test_build_info_latency_buckets_and_model_info() -> None:
    metrics = WorkerMetrics()
    metrics.set_model("blobs", "v3")
    (build,) = _samples(metrics, "knnstream_build_info")
    assert {"version", "python_version", "librdkafka_version"} <= dict(build).keys()
    assert _samples(metrics, "knnstream_model_info") == {(("name", "blobs"), ("version", "v3")): 1.0}
    assert LATENCY_SLO_S in LATENCY_BUCKETS, "the SLO must be a bucket edge: the alert rules read le=0.25"
    for histogram in (metrics.batch_latency, metrics.predict_time):
        histogram.observe(0.1)
    text = generate_latest(metrics.registry).decode()
    assert 'knnstream_batch_latency_seconds_bucket{le="0.25"} 1.0' in text


def test_live_metrics_endpoint_passes_promtool_and_healthz_follows_the_loop() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail(f"promtool is not on PATH: {PROMETHEUS_INSTALL_HINT}")
    metrics, health = WorkerMetrics(), Health(stale_after_s=60)
    metrics.set_model("blobs", "v1")
    metrics.consumed.labels("features").inc(10)
    metrics.predicted.labels("features").inc(9)
    metrics.dead_lettered.labels("features", "invalid_json").inc()
    metrics.decoded_on_driver.labels("features", "part_refused").inc(5)
    metrics.batch_failures.labels("DeliveryError").inc()
    metrics.batch_size.observe(10)
    metrics.batch_latency.observe(0.2)
    metrics.predict_time.observe(0.05)
    metrics.observe_consumer_stats(_stats(_partition(0)))
    metrics.observe_gpu_memory([GpuMemorySample("0", "0", 1, 2)])
    metrics.mark_progress()
    server = MetricsServer(metrics, health, "127.0.0.1", 0)
    server.start()
    try:
        base = f"http://127.0.0.1:{server.port}"
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(f"{base}/healthz", timeout=5)
        assert unhealthy.value.code == 503
        unhealthy.value.close()
        health.beat()
        with urllib.request.urlopen(f"{base}/healthz", timeout=5) as answer:
            assert answer.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            body = answer.read()
    finally:
        server.stop()
    assert b"knnstream_consumer_lag_records" in body and b"knnstream_gpu_memory_used_bytes" in body
    assert b'knnstream_gc_seconds_total{generation="2"}' in body
    result = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, check=False)
    assert result.returncode == 0 and not (result.stdout + result.stderr).strip(), result


def test_the_drivers_garbage_collections_are_counted_per_generation_while_installed() -> None:
    metrics = WorkerMetrics()
    with metrics.collections.timing():
        gc.collect()
        gc.collect(0)
    gc.collect()  # not counted: outside
    seconds = {s.labels["generation"]: s.value for s in _gc_samples(metrics, "knnstream_gc_seconds_total")}
    runs = {s.labels["generation"]: s.value for s in _gc_samples(metrics, "knnstream_gc_collections_total")}
    assert runs["2"] == 1 and runs["0"] >= 1
    assert seconds["2"] > 0


def _gc_samples(metrics: WorkerMetrics, name: str) -> list[Any]:
    return [sample for family in metrics.registry.collect() for sample in family.samples if sample.name == name]
