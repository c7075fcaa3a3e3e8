"""The benchmark's load and its clock: records sent at a fixed rate, and a reader of the output
topic that notes when each record's prediction arrived."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from confluent_kafka import Consumer, Producer, TopicPartition

from stream.demo.local_worker import scrape_totals
from stream.demo.produce import FeatureRecord, send
from stream.errors import KnnStreamError
from stream.settings import InputFormat
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS


def bench_records(features: int, prefix: str, count: int) -> list[FeatureRecord]:
    """``count`` records of random features, their ids ``prefix`` and a number."""
    rows = np.random.default_rng(len(prefix) + count).normal(size=(count, features))
    return [FeatureRecord(f"{prefix}{i}", row) for i, row in enumerate(rows.round(5).tolist())]


def reader_config(bootstrap: str) -> dict[str, str | int | bool]:
    """The output topic's reader: a group of its own, from the start. It reads predictions as
    fast as two GPUs make them, so it must not wait out librdkafka's default second each time its
    prefetch queue fills, as the worker's consumer does not (with that second, a benchmark of two
    replicas on two GPUs went on reading 2M predictions for 4.6 s after the last was made)."""
    return {
        "bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }  # fmt: skip


class OutputReader:
    """Reads the output topic; remembers when each id's prediction arrived."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self._consumer = Consumer(reader_config(bootstrap))
        self._assigned = False
        self._consumer.subscribe([topic], on_assign=self._on_assign)
        self.received_at: dict[str, float] = {}

    @property
    def count(self) -> int:
        return len(self.received_at)

    def wait_for(self, count: int, timeout_s: float, failed: Callable[[], BaseException | None] = lambda: None) -> None:
        """Read until ``count`` predictions arrived; stops with what ``failed`` returns once it
        returns an error (the sender's, a worker's)."""
        deadline = time.monotonic() + timeout_s
        while self.count < count:
            if (error := failed()) is not None:
                raise KnnStreamError(f"stopped after {self.count} of {count} predictions: {error}") from error
            if time.monotonic() > deadline:
                raise KnnStreamError(f"only {self.count} of {count} predictions within {timeout_s:.0f} s")
            # A batch consume waits for as many messages as it asks for: a short timeout, so that
            # each arrival is timed when it comes, not when 10,000 have come.
            self._read(timeout_s=0.005)

    def _read(self, timeout_s: float) -> None:
        # A prediction is keyed like its record, i.e. by the record's id: reading the key, not
        # parsing the value, keeps this reader (one Python thread) well ahead of the worker.
        for message in self._consumer.consume(num_messages=10_000, timeout=timeout_s):
            key = message.key()
            if message.error() is None and key is not None:
                self.received_at.setdefault(key.decode(), time.monotonic())

    def wait_until_assigned(self, timeout_s: float) -> None:
        """Join the reader's group before the clock starts: its own start-up is not the worker's."""
        deadline = time.monotonic() + timeout_s
        while not self._assigned:
            if time.monotonic() > deadline:
                raise KnnStreamError(f"the output topic's reader got no partitions within {timeout_s:.0f} s")
            self._read(timeout_s=0.05)

    def _on_assign(self, _consumer: Consumer, _partitions: list[TopicPartition]) -> None:
        self._assigned = True

    def forget(self) -> None:
        """Start counting afresh (a long soak would otherwise remember every id)."""
        self.received_at.clear()

    def close(self) -> None:
        self._consumer.close()


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
