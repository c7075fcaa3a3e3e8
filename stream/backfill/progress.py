"""Progress of a batch job: a line on a terminal, and Prometheus counters for a scraper.

The counters carry a ``job`` label (``score`` or ``replay``):

* ``knnstream_backfill_records_total``: records read (predicted plus rejected)
* ``knnstream_backfill_predictions_total``: predictions written (score) or acknowledged (replay)
* ``knnstream_backfill_rejected_total{reason}``: records that could not be scored
* ``knnstream_backfill_progress_ratio``: share of the job done, from 0 to 1
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Mapping
from typing import TextIO

from prometheus_client import CollectorRegistry, Counter, Gauge, Info, generate_latest, start_http_server


class BackfillMetrics:
    """The metrics of the batch jobs, on a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.records = Counter(
            "knnstream_backfill_records", "Records read by a batch job", ("job",), registry=self.registry
        )
        self.predictions = Counter(
            "knnstream_backfill_predictions",
            "Predictions written (score) or acknowledged by the broker (replay)",
            ("job",),
            registry=self.registry,
        )
        self.rejected = Counter(
            "knnstream_backfill_rejected",
            "Records that could not be scored",
            ("job", "reason"),
            registry=self.registry,
        )
        self.progress = Gauge(
            "knnstream_backfill_progress_ratio", "Share of the job done (0 to 1)", ("job",), registry=self.registry
        )
        self.model = Info("knnstream_backfill_model", "Model a batch job scores with", ("job",), registry=self.registry)


class MetricsEndpoint:
    """``/metrics`` of a registry, served from a daemon thread while a job runs."""

    def __init__(self, registry: CollectorRegistry, host: str, port: int) -> None:
        self._server, self._thread = start_http_server(port, addr=host, registry=registry)

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class ProgressLine:
    """One line on standard error, rewritten in place (carriage return) a few times a second."""

    def __init__(self, job: str, stream: TextIO | None = None, min_interval_s: float = 0.2) -> None:
        self._job = job
        self._stream = stream if stream is not None else sys.stderr
        self._min_interval_s = min_interval_s
        self._started = time.monotonic()
        self._last_shown = float("-inf")
        self._width = 0

    def show(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last_shown < self._min_interval_s:
            return
        self._last_shown = now
        line = f"{self._job}: {text}"
        self._stream.write("\r" + line.ljust(self._width))
        self._stream.flush()
        self._width = len(line)

    def close(self) -> None:
        self._stream.write("\n")
        self._stream.flush()

    def rate(self, records: int) -> float:
        return records / max(time.monotonic() - self._started, 1e-6)


def progress_line(job: str, choice: str, stream: TextIO | None = None) -> ProgressLine | None:
    """A progress line when ``choice`` is ``always``, or ``auto`` and the stream is a terminal."""
    stream = stream if stream is not None else sys.stderr
    wanted = choice == "always" or (choice == "auto" and stream.isatty())
    return ProgressLine(job, stream) if wanted else None


class Progress:
    """Counts a job's work into its metrics and its progress line; safe to call from any thread."""

    def __init__(self, job: str, metrics: BackfillMetrics, line: ProgressLine | None, unit: str) -> None:
        self.job = job
        self._metrics = metrics
        self._line = line
        self._unit = unit
        self._lock = threading.Lock()
        self.total: int | None = None
        self.done = 0
        self.records = 0
        self.predicted = 0
        self.rejected: dict[str, int] = {}

    def start(self, model: str, version: str, total: int | None) -> None:
        self._metrics.model.labels(self.job).info({"name": model, "version": version})
        self.total = total
        self._metrics.progress.labels(self.job).set(1.0 if total == 0 else 0.0)
        self._show(force=True)

    def advance(self, done: int, records: int, predicted: int, rejected: Mapping[str, int] | None = None) -> None:
        """``done`` units of work finished, holding ``records`` records of which ``predicted`` were scored."""
        with self._lock:
            self.done += done
            self.records += records
            self.predicted += predicted
            self._metrics.records.labels(self.job).inc(records)
            self._metrics.predictions.labels(self.job).inc(predicted)
            for reason, count in (rejected or {}).items():
                self.rejected[reason] = self.rejected.get(reason, 0) + count
                self._metrics.rejected.labels(self.job, reason).inc(count)
            if self.total:
                self._metrics.progress.labels(self.job).set(min(1.0, self.done / self.total))
            self._show()

    def finish(self) -> None:
        """The job is done: the ratio goes to 1 and the line shows the final counts."""
        with self._lock:
            self._metrics.progress.labels(self.job).set(1.0)
            self._show(force=True)
        self.close()

    def close(self) -> None:
        """End the progress line (also after a failure, so an error message starts a line of its own)."""
        with self._lock:
            if self._line is not None:
                self._line.close()
                self._line = None

    def _show(self, force: bool = False) -> None:
        if self._line is None:
            return
        of_total = f"/{self.total:,}" if self.total is not None else ""
        share = f" ({self.done / self.total:.1%})" if self.total else ""
        rejected = sum(self.rejected.values())
        self._line.show(
            f"{self.done:,}{of_total} {self._unit}{share}, {self.predicted:,} predicted, {rejected:,} rejected,"
            f" {self._line.rate(self.records):,.0f} records/s",
            force=force,
        )


def metrics_text(metrics: BackfillMetrics) -> str:
    """The metrics in the Prometheus text format."""
    return generate_latest(metrics.registry).decode()
