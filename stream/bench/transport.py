"""The transport's own limit: a plain consume → decode → encode → produce → commit loop.

The loop reads the same backlog as the worker does (the same records, sent by the same burst,
into a topic of as many partitions), with the worker's own consumer and producer configurations
(:func:`stream.source.consumer.consumer_config`, :func:`stream.sink.kafka.producer_config`), in
batches of the benchmark's size, and does to each batch what the worker does bar the prediction:
decodes it (float32 rows with numpy, JSON lines with Arrow), encodes one JSON prediction per
record (a constant one) with the worker's encoder, produces the batch, waits for every
acknowledgement and commits its offsets. It runs in a process of its own, as the worker does,
and it is timed as the worker's backlog is: from the release (of as many senders) to the last of
its output read by the benchmark's reader (:class:`stream.bench.output.OutputReader`, of as many
processes), which runs meanwhile as it does for the worker (on a small host it takes a share of
the cores, and the broker serves it). The rate it reaches is the most the worker could deliver
on this broker, this machine and these settings, whatever the search's speed.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.queues import SimpleQueue
from multiprocessing.synchronize import Event
from typing import Any

import numpy as np
import pyarrow as pa
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition

from stream.batching.microbatch import MicroBatch
from stream.bench.backlog import start_burst
from stream.bench.host import bench_processes
from stream.bench.output import OutputReader
from stream.bench.progress import SAMPLE_EVERY_S
from stream.errors import KnnStreamError
from stream.records.encode import encode_values, prediction_headers
from stream.records.formats import joined
from stream.records.parse import parse_part
from stream.settings import BenchSettings, InputFormat, ServeSettings
from stream.sink.kafka import Headers, producer_config
from stream.source.consumer import consumer_config

READY_TIMEOUT_S = 120.0
LOOP_TIMEOUT_S = 1800.0
FIGURES_TIMEOUT_S = 60.0  # from the last record read to the loop's own figures
VERSION = "transport"


@dataclass(frozen=True)
class TransportLoop:
    """What the loop measured: its rate (records over the time from the release to the last of its
    output read), and the CPU seconds its process took for the backlog (librdkafka's threads
    included), to set beside the worker's."""

    rows_per_s: float
    cpu_s: float
    # every half second (at the end of the batch that crossed it): seconds since the release, records moved
    course: tuple[tuple[float, int], ...] = ()
    first_commit_s: float = 0.0  # from the release to the first batch's offsets committed
    host_busy: float = 0.0  # the share of the host's core time spent busy meanwhile (stream.bench.host)


@dataclass(frozen=True)
class LoopFigures:
    """What the loop's process measures of itself: its CPU seconds, its course, its first commit."""

    cpu_s: float
    course: tuple[tuple[float, int], ...]
    first_commit_s: float


def transport_loop(settings: BenchSettings, input_topic: str, output_topic: str) -> TransportLoop:
    """Records a second the plain loop moves from ``input_topic`` to ``output_topic``: from the
    backlog's release to the last of them read from ``output_topic``."""
    reader = OutputReader(settings.bootstrap_servers, output_topic, bench_processes(settings.output_readers))
    try:
        reader.wait_until_assigned(timeout_s=READY_TIMEOUT_S)
        return _time_the_loop(settings, input_topic, output_topic, reader)
    finally:
        reader.close()


def _time_the_loop(settings: BenchSettings, input_topic: str, output_topic: str, reader: OutputReader) -> TransportLoop:
    burst = start_burst(
        settings.bootstrap_servers, input_topic, settings.records, settings.features, settings.format,
        senders=bench_processes(settings.backlog_senders),
    )  # fmt: skip
    context = multiprocessing.get_context("spawn")
    ready, go = context.Event(), context.Event()
    measured: SimpleQueue[LoopFigures] = context.SimpleQueue()
    loop_settings = _loop_settings(settings, input_topic, output_topic)
    process = context.Process(
        target=_run_loop,
        args=(loop_settings, settings.records, settings.features, ready, go, measured),
        name="knnstream-transport",
    )
    process.start()
    try:
        burst.wait_ready()
        _wait(ready, process, READY_TIMEOUT_S, "the transport loop did not get its partitions")
        go.set()
        timed = burst.release_until_read(
            reader, settings.records, LOOP_TIMEOUT_S, failed=lambda: burst.failure() or _failure(process)
        )
        figures = _figures_of(process, measured)
        process.join(FIGURES_TIMEOUT_S)
        burst.wait_sent()
        rate = settings.records / timed.seconds
        return TransportLoop(rate, figures.cpu_s, figures.course, figures.first_commit_s, timed.host_busy)
    finally:
        if process.is_alive():
            process.kill()
            process.join()
        measured.close()
        burst.close()


def _loop_settings(settings: BenchSettings, input_topic: str, output_topic: str) -> ServeSettings:
    """A worker's settings on the loop's topics, as the benchmarked worker gets them."""
    return ServeSettings(
        bootstrap_servers=settings.bootstrap_servers,
        input_topic=input_topic,
        output_topic=output_topic,
        group_id=f"bench-transport-{uuid.uuid4().hex[:8]}",
        model="transport@loop",  # no model: the loop predicts nothing
        batch_max_records=settings.batch_size,
        batch_max_wait_ms=settings.batch_max_wait_ms,
        input_format=settings.format,
        statistics_interval_ms=0,
    )


def _figures_of(process: multiprocessing.process.BaseProcess, measured: SimpleQueue[LoopFigures]) -> LoopFigures:
    """What the loop's process measured, read before it is joined: it exits once its figures are
    read (a put larger than the pipe's buffer waits for the reader)."""
    deadline = time.monotonic() + FIGURES_TIMEOUT_S
    while measured.empty():
        if (error := _failure(process)) is not None:
            raise error
        if process.exitcode == 0 and measured.empty():
            raise KnnStreamError("the transport loop ended without its figures")
        if time.monotonic() > deadline:
            raise KnnStreamError(f"the transport loop gave no figures {FIGURES_TIMEOUT_S:.0f} s after its last record")
        time.sleep(0.05)
    figures: LoopFigures = measured.get()
    return figures


def _failure(process: multiprocessing.process.BaseProcess) -> KnnStreamError | None:
    """An error once the loop's process has failed (it exits 0 only with every record moved)."""
    if process.exitcode in (None, 0):
        return None
    return KnnStreamError(f"the transport loop failed (exit code {process.exitcode}; its error is above)")


def _wait(event: Event, process: multiprocessing.process.BaseProcess, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not event.wait(0.1):
        if not process.is_alive() or time.monotonic() > deadline:
            raise KnnStreamError(f"{what} (exit code {process.exitcode})")


def _run_loop(
    settings: ServeSettings,
    count: int,
    n_features: int,
    ready: Event,
    go: Event,
    measured: SimpleQueue[LoopFigures],
) -> None:
    """The loop's process: join the group, wait for the go, move ``count`` records, report what it measured."""
    failures: list[str] = []

    def on_failure(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    consumer = Consumer(consumer_config(settings))
    producer = Producer(producer_config(settings) | {"delivery.report.only.error": True, "on_delivery": on_failure})
    try:
        _join(consumer, settings.input_topic)
        ready.set()
        go.wait(READY_TIMEOUT_S)
        started, cpu_at_start = time.monotonic(), time.process_time()
        moved, course = 0, Course()
        while moved < count:
            if time.monotonic() - started > LOOP_TIMEOUT_S:
                raise SystemExit(f"the transport loop moved {moved} of {count} records in {LOOP_TIMEOUT_S:.0f} s")
            messages = consumer.consume(settings.batch_max_records, settings.batch_max_wait_ms / 1000)
            records = [message for message in messages if message.error() is None]
            if records:
                _move(consumer, producer, settings, records, n_features)
                if failures:
                    raise SystemExit(f"{len(failures)} transport records were not delivered, e.g. {failures[0]}")
                moved += len(records)
                course.passed(time.monotonic() - started, moved)
        course.ended(time.monotonic() - started, moved)
        measured.put(LoopFigures(time.process_time() - cpu_at_start, course.samples, course.first_s or 0.0))
    finally:
        consumer.close()


class Course:
    """The loop's records moved, taken at the end of each batch that crossed a half second (the
    marks of the worker's course, :mod:`stream.bench.progress`)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S) -> None:
        self._every_s = every_s
        self._next_s = every_s
        self.samples: tuple[tuple[float, int], ...] = ()
        self.first_s: float | None = None

    def passed(self, seconds: float, moved: int) -> None:
        """A batch committed ``seconds`` after the release, ``moved`` records in all by then."""
        if self.first_s is None:
            self.first_s = round(seconds, 3)
        if seconds >= self._next_s:
            self.samples = (*self.samples, (round(seconds, 2), moved))
            self._next_s = (seconds // self._every_s + 1) * self._every_s

    def ended(self, seconds: float, moved: int) -> None:
        """The last batch committed: the course ends with it."""
        if not self.samples or self.samples[-1][1] != moved:
            self.samples = (*self.samples, (round(seconds, 2), moved))


def _join(consumer: Consumer, topic: str) -> None:
    """Subscribe and poll until the group gave this consumer its partitions (the topic is empty)."""
    assigned: list[TopicPartition] = []
    consumer.subscribe([topic], on_assign=lambda _consumer, partitions: assigned.extend(partitions))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not assigned:
        if time.monotonic() > deadline:
            raise SystemExit(f"no partition of {topic} assigned within {READY_TIMEOUT_S:.0f} s")
        consumer.consume(1, 0.1)


def _move(
    consumer: Consumer, producer: Producer, settings: ServeSettings, records: Sequence[Message], n_features: int
) -> None:
    """Decode, encode, produce, wait for the acknowledgements, commit: one batch."""
    keys = [record.key() for record in records]
    values = [record.value() for record in records]
    ids = _decoded_ids(settings.input_format, values, keys, n_features)
    rows = len(records)
    encoded = encode_values(ids, np.zeros(rows, np.int64), np.zeros(rows, np.float32), VERSION)
    headers: Headers = list(prediction_headers(VERSION))
    produce, topic = producer.produce, settings.output_topic
    for key, value in zip(keys, encoded, strict=True):
        while True:
            try:
                produce(topic, value, key, headers=headers)
                break
            except BufferError:
                producer.poll(0.005)
    if producer.flush(settings.delivery_timeout_s) > 0:
        raise SystemExit(f"transport records unacknowledged after {settings.delivery_timeout_s:.0f} s")
    consumer.commit(offsets=MicroBatch(list(records)).next_offsets(), asynchronous=False)


def _decoded_ids(input_format: InputFormat, values: list[Any], keys: list[Any], n_features: int) -> pa.Array:
    """The batch decoded as a CPU Dask worker decodes it (:func:`parse_part`); its ids (the
    features are dropped)."""
    parsed = parse_part(input_format, joined(input_format, values), pa.array(keys, pa.binary()), n_features, "cpu")
    if parsed is None:
        raise SystemExit("the transport loop read a record that is not clean")
    ids: pa.Array = parsed[0]
    return ids
