"""The benchmark's backlog: sent as one burst, by a process of its own, once every worker is in
the consumer group and has its partitions.

The records are made and encoded before the clock starts; then the burst producer sends them as
fast as librdkafka takes them, so that on a host with cores to spare the backlog builds up faster
than the workers take it and their rate is what the benchmark measures (the time the burst took
is reported beside it, to tell). Sending them before the
workers start would let the first worker ready begin on the backlog alone, and the others take
their partitions from it in a rebalance under way. Its own process keeps the burst from sharing
an interpreter with the benchmark's reader of the predictions.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from stream.bench.host import core_times
from stream.bench.load import OutputReader, bench_records
from stream.errors import KnnStreamError
from stream.settings import InputFormat

READY_TIMEOUT_S = 600.0  # making and encoding millions of records
CONNECT_TIMEOUT_S = 30.0  # for the broker's metadata of the backlog's topic


@dataclass(frozen=True)
class Released:
    """A backlog from its release to its last record read."""

    at: float  # time.monotonic() of the release
    seconds: float  # from the release to the last record read
    host_busy: float  # the share of the host's core time spent busy meanwhile (stream.bench.host)


class Burst:
    """A process holding the backlog's records, encoded and ready; :meth:`release` sends them."""

    def __init__(self, process: BaseProcess, ready: Event, go: Event, sent_s: Synchronized[float]) -> None:
        self._process, self._ready, self._go = process, ready, go
        self._sent_s = sent_s  # set by the process once every record is acknowledged

    def wait_sent(self, timeout_s: float = 60.0) -> float:
        """Seconds from the release to the last record acknowledged. Close to the backlog's time,
        they would say that the burst, not the workers, set the pace."""
        deadline = time.monotonic() + timeout_s
        while (seconds := self._sent_s.value) < 0:
            if (error := self.failure()) is not None:
                raise error
            if time.monotonic() > deadline:
                raise KnnStreamError(f"the backlog's burst was not acknowledged within {timeout_s:.0f} s")
            time.sleep(0.01)
        return float(seconds)

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if (error := self.failure()) is not None:
                raise error
            if time.monotonic() > deadline:
                raise KnnStreamError(f"the backlog was not ready to send within {timeout_s:.0f} s")

    def release(self) -> None:
        self._go.set()

    def release_until_read(
        self, reader: OutputReader, count: int, timeout_s: float, failed: Callable[[], BaseException | None]
    ) -> Released:
        """Release the backlog and read until ``count`` predictions (or transported records) have
        arrived: the worker's backlog and the transport loop's are timed by this one clock."""
        released_at, cores_at_release = time.monotonic(), core_times()
        self.release()
        reader.wait_for(count, timeout_s, failed)
        last_read = max(reader.received_at.values())
        return Released(released_at, last_read - released_at, core_times().busy_share_since(cores_at_release))

    def failure(self) -> KnnStreamError | None:
        """An error once the burst's process has failed (it exits 0 only with every record acknowledged)."""
        code = self._process.exitcode
        if code in (None, 0):
            return None
        return KnnStreamError(f"the backlog's burst failed (exit code {code}; its error is above)")

    def close(self) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=10)
        if self._process.is_alive():
            self._process.kill()
        self._process.join()


def start_burst(
    bootstrap_servers: str,
    topic: str,
    count: int,
    features: int,
    input_format: InputFormat,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
) -> Burst:
    """Start the burst's process: it makes and encodes ``count`` records, connects (within
    ``connect_timeout_s``, or it fails), and waits."""
    context = multiprocessing.get_context("spawn")
    ready, go, sent_s = context.Event(), context.Event(), context.Value("d", -1.0)
    args = (bootstrap_servers, topic, count, features, input_format, connect_timeout_s, ready, go, sent_s)
    process = context.Process(target=_send_burst, args=args, name="knnstream-burst", daemon=True)
    process.start()
    return Burst(process, ready, go, sent_s)


def _send_burst(
    bootstrap_servers: str,
    topic: str,
    count: int,
    features: int,
    input_format: InputFormat,
    connect_timeout_s: float,
    ready: Event,
    go: Event,
    sent_s: Synchronized[float],
) -> None:
    """The burst's process: encode, connect, wait for the go, send, and exit once acknowledged."""
    records = bench_records(features, "b", count)
    keys = [record.key() for record in records]
    values = [record.value(input_format) for record in records]
    del records
    failures: list[str] = []

    def on_failure(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    producer = Producer({
        "bootstrap.servers": bootstrap_servers, "linger.ms": 20, "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True, "on_delivery": on_failure,
    })  # fmt: skip
    producer.list_topics(topic, timeout=connect_timeout_s)  # connected, with the topic's leaders
    ready.set()
    while not go.wait(1.0):
        parent = multiprocessing.parent_process()
        if parent is None or not parent.is_alive():
            return  # the benchmark has gone: nothing to send the records for
    started = time.monotonic()
    produce = producer.produce
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.005)
    remaining = producer.flush(120)
    if remaining or failures:
        raise SystemExit(f"{remaining + len(failures)} of {count} backlog records were not delivered to {topic}")
    sent_s.value = time.monotonic() - started


def wait_group_settled(
    bootstrap_servers: str, group_id: str, members: int, partitions: int, timeout_s: float = 120.0
) -> None:
    """Wait until ``group_id`` is stable with ``members`` members, each holding partitions and
    together all ``partitions`` of the topic they read."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    deadline = time.monotonic() + timeout_s
    seen = "not described yet"
    while time.monotonic() < deadline:
        try:
            group = admin.describe_consumer_groups([group_id])[group_id].result(timeout=10)
        except (KafkaException, TimeoutError) as exc:  # e.g. its coordinator still loading: ask again
            seen = f"not described: {exc}"
            time.sleep(0.1)
            continue
        held = [len(member.assignment.topic_partitions) for member in group.members]
        stable = group.state == ConsumerGroupState.STABLE
        if stable and len(held) == members and min(held) > 0 and sum(held) == partitions:
            return
        seen = f"{group.state.name.lower()}, partitions per member {held}"
        time.sleep(0.1)
    raise KnnStreamError(
        f"consumer group {group_id} did not settle on {members} members within {timeout_s:.0f} s ({seen})"
    )
