"""Prometheus metrics and the ``/metrics`` + ``/healthz`` endpoint of the worker."""

from __future__ import annotations

import json
import logging
import platform
import threading
import time
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import metadata
from typing import TYPE_CHECKING, Any

import confluent_kafka
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from stream.errors import ConfigurationError
from stream.heap import CollectionTimer
from stream.source.lag import partition_lags

if TYPE_CHECKING:
    from stream.predict.gpu_memory import GpuMemorySample

log = logging.getLogger(__name__)

# Bucket edges around the 250 ms batch-latency objective: fine near it, coarse far from it.
LATENCY_SLO_S = 0.25
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)
# A stage of one batch takes from tens of microseconds (a check) to seconds (a large prediction).
STAGE_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class WorkerMetrics:
    """Every metric the worker exports, on a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        labels = ("topic",)
        self.consumed = Counter(
            "knnstream_records_consumed", "Records read from the input topic", labels, registry=self.registry
        )
        self.predicted = Counter(
            "knnstream_records_predicted",
            "Records whose prediction the broker acknowledged",
            labels,
            registry=self.registry,
        )
        self.dead_lettered = Counter(
            "knnstream_records_dead_lettered",
            "Records sent to the dead-letter topic",
            ("topic", "reason"),
            registry=self.registry,
        )
        self.decoded_on_driver = Counter(
            "knnstream_records_decoded_on_driver",
            "Records decoded on the driver where the Dask workers parse: their batch"
            " did not look clean (reason batch_not_clean), or a worker could not parse their part"
            " (reason part_refused)",
            ("topic", "reason"),
            registry=self.registry,
        )
        self.batch_failures = Counter(
            "knnstream_batch_failures",
            "Batches rewound after a failed prediction or delivery",
            ("stage",),
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "knnstream_batch_size_records",
            "Records per micro-batch",
            buckets=BATCH_SIZE_BUCKETS,
            registry=self.registry,
        )
        self.batch_latency = Histogram(
            "knnstream_batch_latency_seconds",
            "From a batch's first record consumed to its offsets committed",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.predict_time = Histogram(
            "knnstream_predict_duration_seconds",
            "Time to predict one micro-batch on the Dask workers (parse and predict; with the workers"
            " producing, until the broker acknowledged their predictions)",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stage_time = Histogram(
            "knnstream_stage_duration_seconds",
            "Seconds one stage took: for a batch on the driver (where=driver), for a part of a batch on"
            " the Dask worker that scored it (where=worker). decode: the driver's check of the values, or"
            " a worker's parse; dispatch: the parts sent to the workers; predict; encode: the JSON"
            " predictions; produce: the records handed to the producer; acknowledge: the flush until the"
            " broker acknowledged them (exactly-once: the transaction's commit); commit: the offsets",
            ("stage", "where"),
            buckets=STAGE_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("knnstream_inflight_batches", "Micro-batches being processed", registry=self.registry)
        self.model = Info("knnstream_model", "Model in use", registry=self.registry)
        self.build = Info("knnstream_build", "Versions of the worker and its Kafka client", registry=self.registry)
        self.build.info(_build_labels())
        self.last_progress = Gauge(
            "knnstream_last_progress_timestamp_seconds",
            "Unix time the consume loop last went round",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "knnstream_consumer_lag_records",
            "Records between the end of an assigned partition and the group's committed offset",
            ("topic", "partition"),
            registry=self.registry,
        )
        self.gpu_memory_used = Gauge(
            "knnstream_gpu_memory_used_bytes",
            "Memory in use on the GPU of a Dask worker",
            ("worker", "device"),
            registry=self.registry,
        )
        self.gpu_memory_total = Gauge(
            "knnstream_gpu_memory_total_bytes",
            "Memory of the GPU of a Dask worker",
            ("worker", "device"),
            registry=self.registry,
        )
        self.collections = CollectionTimer()  # timing in the worker's driver process
        self.registry.register(_GarbageCollections(self.collections))
        self._lag_labels: dict[str, set[tuple[str, str]]] = {}  # per librdkafka client name
        self._gpu_labels: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def set_model(self, name: str, version: str) -> None:
        self.model.info({"name": name, "version": version})

    def observe_stage(self, stage: str, seconds: float, where: str = "driver") -> None:
        """One stage's time (decode, dispatch, predict, encode, produce, acknowledge or commit), for a
        batch on the driver or a part on a worker."""
        self.stage_time.labels(stage, where).observe(seconds)

    def observe_worker_stages(self, timings: Iterable[tuple[str, float]]) -> None:
        """The stage times the Dask workers measured and sent back with their parts."""
        for stage, seconds in timings:
            self.stage_time.labels(stage, "worker").observe(seconds)

    def mark_progress(self) -> None:
        self.last_progress.set(time.time())

    def observe_consumer_stats(self, stats_json: str) -> None:
        """librdkafka ``stats_cb``: one lag gauge per assigned partition; revoked ones are removed.

        Never raises: an exception here would surface from the consumer's poll.
        """
        try:
            stats = json.loads(stats_json)
            lags = partition_lags(stats)
            client = str(stats.get("name", ""))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            log.warning("ignoring unreadable librdkafka statistics: %s", exc)
            return
        current = {(lag.topic, str(lag.partition)): lag.lag for lag in lags}
        with self._lock:
            for labels, value in current.items():
                self.consumer_lag.labels(*labels).set(value)
            previous = self._lag_labels.get(client, set())
            owned_elsewhere = set().union(*(v for k, v in self._lag_labels.items() if k != client))
            _remove_stale(self.consumer_lag, previous - current.keys() - owned_elsewhere)
            self._lag_labels[client] = set(current)

    def observe_gpu_memory(self, samples: Iterable[GpuMemorySample]) -> None:
        """The latest GPU memory of every Dask worker; workers that left are removed."""
        current = set()
        with self._lock:
            for sample in samples:
                labels = (sample.worker, sample.device)
                self.gpu_memory_used.labels(*labels).set(sample.used_bytes)
                self.gpu_memory_total.labels(*labels).set(sample.total_bytes)
                current.add(labels)
            stale = self._gpu_labels - current
            _remove_stale(self.gpu_memory_used, stale)
            _remove_stale(self.gpu_memory_total, stale)
            self._gpu_labels = current


class _GarbageCollections(Collector):
    """The driver's garbage collections, per generation, read from a :class:`CollectionTimer`."""

    def __init__(self, timer: CollectionTimer) -> None:
        self._timer = timer

    def collect(self) -> Iterable[CounterMetricFamily]:
        seconds = CounterMetricFamily(
            "knnstream_gc_seconds", "CPU seconds the driver's garbage collector ran", labels=["generation"]
        )
        runs = CounterMetricFamily(
            "knnstream_gc_collections", "Garbage collections of the driver", labels=["generation"]
        )
        for generation in range(3):
            seconds.add_metric([str(generation)], self._timer.seconds[generation])
            runs.add_metric([str(generation)], self._timer.collections[generation])
        yield seconds
        yield runs


def _remove_stale(gauge: Gauge, label_sets: Iterable[tuple[str, ...]]) -> None:
    for labels in label_sets:
        try:
            gauge.remove(*labels)
        except KeyError:
            continue


def _build_labels() -> dict[str, str]:
    try:
        version = metadata.version("knnstream")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return {
        "version": version,
        "python_version": platform.python_version(),
        "confluent_kafka_version": confluent_kafka.version()[0],
        "librdkafka_version": confluent_kafka.libversion()[0],
    }


class Health:
    """Healthy while the consume loop keeps going round."""

    def __init__(self, stale_after_s: float = 60.0) -> None:
        self._stale_after_s = stale_after_s
        self._last_beat = time.monotonic()
        self._ready = False

    def beat(self) -> None:
        self._last_beat = time.monotonic()
        self._ready = True

    def is_healthy(self) -> bool:
        return self._ready and time.monotonic() - self._last_beat < self._stale_after_s


class MetricsServer:
    """Serves ``/metrics`` and ``/healthz`` from a daemon thread; binds its port in :meth:`start`."""

    def __init__(self, metrics: WorkerMetrics, health: Health, host: str, port: int) -> None:
        self._address = (host, port)
        self._handler = _handler(metrics.registry, health)
        self._server: ThreadingHTTPServer | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            return self._address[1]
        return int(self._server.server_address[1])

    def start(self) -> None:
        try:
            self._server = ThreadingHTTPServer(self._address, self._handler)
        except OSError as exc:
            host, port = self._address
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}") from exc
        threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


def _handler(registry: CollectorRegistry, health: Health) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/metrics"):
                self._answer(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path.startswith("/healthz"):
                healthy = health.is_healthy()
                self._answer(200 if healthy else 503, b"ok\n" if healthy else b"unhealthy\n", "text/plain")
            else:
                self._answer(404, b"not found\n", "text/plain")

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            try:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the scraper went away; nothing to answer

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server naming
            return

    return Handler
