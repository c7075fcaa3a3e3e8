"""Prometheus metrics and the ``/metrics`` + ``/healthz`` endpoint of the worker."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, Info, generate_latest

# Bucket edges around a 250 ms end-to-end latency objective.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_SIZE_BUCKETS = (1, 10, 100, 500, 1_000, 5_000, 10_000, 50_000, 100_000)


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
            "Time to predict one micro-batch on the Dask workers",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge("knnstream_inflight_batches", "Micro-batches being processed", registry=self.registry)
        self.model = Info("knnstream_model", "Model in use", registry=self.registry)
        self.last_progress = Gauge(
            "knnstream_last_progress_timestamp_seconds",
            "Unix time the consume loop last went round",
            registry=self.registry,
        )

    def set_model(self, name: str, version: str) -> None:
        self.model.info({"name": name, "version": version})

    def mark_progress(self) -> None:
        self.last_progress.set(time.time())


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
    """Serves ``/metrics`` and ``/healthz`` from a daemon thread."""

    def __init__(self, metrics: WorkerMetrics, health: Health, host: str, port: int) -> None:
        self._server = ThreadingHTTPServer((host, port), _handler(metrics.registry, health))
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


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
