"""The benchmark's load and its clock: its records, sent at a fixed rate, each timed to its
prediction read by the output topic's reader (:mod:`stream.bench.output`); the worker's batch
figures over that load."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Producer

from stream.bench.output import OutputReader
from stream.demo.local_worker import scrape_totals
from stream.demo.produce import FeatureRecord, send
from stream.errors import KnnStreamError
from stream.settings import InputFormat

_SKIP_ROWS = 100_000  # rows drawn at a time on the way to a slice's first


def bench_records(
    features: int, prefix: str, count: int, start: int = 0, stop: int | None = None
) -> list[FeatureRecord]:
    """Records ``start`` to ``stop`` (all by default) of ``count`` records of random features, their
    ids ``prefix`` and a number: a record's features are the same whichever slice it is made in."""
    stop = count if stop is None else stop
    rng = np.random.default_rng(len(prefix) + count)
    # A generator's normals drawn in parts are those it draws at once: the rows before the slice
    # are drawn and dropped in parts, not held.
    for skipped in range(0, start, _SKIP_ROWS):
        rng.normal(size=(min(_SKIP_ROWS, start - skipped), features))
    rows = rng.normal(size=(max(0, stop - start), features))
    return [FeatureRecord(f"{prefix}{i}", row) for i, row in enumerate(rows.round(5).tolist(), start)]


def latency_phase(
    producer: Producer,
    topic: str,
    reader: OutputReader,
    records: list[FeatureRecord],
    rate: float,
    input_format: InputFormat = "json",
) -> np.ndarray:
    """Send ``records`` at ``rate`` per second; each one's latency in ms, from its send to the
    arrival of its prediction."""
    sent_at: dict[str, float] = {}
    failures: list[BaseException] = []

    def send_all() -> None:
        try:
            send(producer, topic, records, rate, lambda r: sent_at.__setitem__(r.id, time.monotonic()), input_format)
        except Exception as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            failures.append(exc)

    sender = threading.Thread(target=send_all, daemon=True)
    sender.start()
    reader.wait_for(reader.count + len(records), timeout_s=600, failed=lambda: _not_sent(failures))
    sender.join()
    return np.array([(reader.received_at[r.id] - sent_at[r.id]) * 1000 for r in records])


def _not_sent(failures: list[BaseException]) -> KnnStreamError | None:
    return KnnStreamError(f"the records could not be sent: {failures[0]}") if failures else None


_BATCH_SAMPLES = (
    "knnstream_batch_size_records_count",
    "knnstream_batch_size_records_sum",
    "knnstream_batch_latency_seconds_count",
    "knnstream_batch_latency_seconds_sum",
    "knnstream_predict_duration_seconds_count",
    "knnstream_predict_duration_seconds_sum",
)
_IN_FLIGHT = "knnstream_inflight_batches"


@dataclass(frozen=True)
class BatchStats:
    """The worker's micro-batches over a phase of the benchmark, from its ``/metrics``."""

    batches: int
    records_mean: float  # records per batch
    batch_ms_mean: float  # from a batch's first record consumed to its offsets committed
    predict_ms_mean: float  # per prediction on the Dask workers (parse, predict; produce when they produce)


def settled_batch_totals(ports: Sequence[int], timeout_s: float = 60.0) -> dict[str, float]:
    """The running totals :func:`batch_stats` takes the difference of (summed over the workers at
    ``ports``), once the workers are idle: no batch in flight, and the same totals in two
    readings a moment apart. (A phase's predictions are read before their batches are committed
    and counted, and one scrape does not read the histograms and the in-flight gauge at one
    instant.)"""
    deadline = time.monotonic() + timeout_s
    previous: dict[str, float] | None = None
    while True:
        totals = scrape_totals(ports, (*_BATCH_SAMPLES, _IN_FLIGHT))
        if totals[_IN_FLIGHT] == 0 and totals == previous:
            return totals
        if time.monotonic() > deadline:
            in_flight = totals[_IN_FLIGHT]
            raise KnnStreamError(f"the worker was not idle within {timeout_s:.0f} s ({in_flight:.0f} in flight)")
        previous = totals
        time.sleep(0.05)


def batch_stats(before: dict[str, float], after: dict[str, float]) -> BatchStats:
    """The batches between two :func:`settled_batch_totals` (zeros when there were none)."""
    delta = {name: after[name] - before[name] for name in _BATCH_SAMPLES}
    batches = int(delta["knnstream_batch_size_records_count"])
    if batches == 0:
        return BatchStats(0, 0.0, 0.0, 0.0)
    # Each histogram by its own count: a batch rewound after a failure was started (and sized) but
    # never committed, and with the workers producing, one whose parts they refused is predicted
    # twice (there, then on the driver).
    committed = max(1.0, delta["knnstream_batch_latency_seconds_count"])
    predictions = max(1.0, delta["knnstream_predict_duration_seconds_count"])
    return BatchStats(
        batches,
        delta["knnstream_batch_size_records_sum"] / batches,
        delta["knnstream_batch_latency_seconds_sum"] * 1000 / committed,
        delta["knnstream_predict_duration_seconds_sum"] * 1000 / predictions,
    )
