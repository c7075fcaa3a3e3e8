"""The benchmark's backlog: sent as one burst, by processes of its own, once every worker is in
the consumer group and has its partitions.

The records are shared out among the burst's senders, each a process that makes and encodes its
share before the clock starts (the same ids and features as one sender of them all would make);
then one release sets them all off, each sending its share as fast as librdkafka takes it, so
that on a host with cores to spare the backlog builds up faster than the workers take it and
their rate is what the benchmark measures (the time the burst took, to its last sender's last
acknowledgement, is reported beside it, to tell). One sender, a Python loop, topped out near
500,000 records a second on a sixteen-core host. Sending the records before the workers start
would let the first worker ready begin on the backlog alone, and the others take their
partitions from it in a rebalance under way. Processes of their own keep the burst from sharing
an interpreter with the benchmark's reader of the predictions.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess

from confluent_kafka import ConsumerGroupState, KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient

from stream.bench.host import core_times
from stream.bench.load import bench_records
from stream.bench.output import OutputReader
from stream.errors import KnnStreamError
from stream.settings import InputFormat

READY_TIMEOUT_S = 600.0  # making and encoding millions of records
CONNECT_TIMEOUT_S = 30.0  # for the broker's metadata of the backlog's topic
READY, GO = "ready", "go"  # what a sender and the benchmark say to each other


@dataclass(frozen=True)
class Released:
    """A backlog from its release to its last record read."""

    at: float  # time.monotonic() of the release
    seconds: float  # from the release to the last record read
    host_busy: float  # the share of the host's core time spent busy meanwhile (stream.bench.host)


@dataclass(frozen=True)
class Share:
    """What one sender sends: records ``start`` to ``stop`` of the backlog's ``count``."""

    bootstrap_servers: str
    topic: str
    count: int
    start: int
    stop: int
    features: int
    input_format: InputFormat
    connect_timeout_s: float


class Sender:
    """One sender's process and the parent's end of its line: down it goes the release; up it
    come word that the sender is ready (connected, its records encoded), then the
    ``time.monotonic()`` of its last acknowledgement. A line of its own, not an event or a value
    shared by all: a sender killed while it held a shared lock (waiting for the release, say)
    would leave the parent waiting for the lock for ever."""

    def __init__(self, process: BaseProcess, line: Connection) -> None:
        self.process, self._line = process, line
        self.ready = False
        self.done_at: float | None = None

    def hear(self) -> None:
        """Take in what the sender has said, if anything."""
        while not self._line.closed and self._line.poll():
            try:
                said = self._line.recv()
            except EOFError:
                self._line.close()  # it has ended: failure() says how
                return
            if said == READY:
                self.ready = True
            else:
                self.done_at = float(said)

    def release(self) -> None:
        try:
            self._line.send(GO)
        except OSError:  # a broken pipe, or a line closed once its end was read
            self._line.close()  # it has ended: failure() says how

    def close(self) -> None:
        if self.process.is_alive():
            self.process.terminate()

    def join(self) -> None:
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self._line.close()


class Burst:
    """Processes holding the backlog's records, each its share encoded and ready; :meth:`release`
    sends them all."""

    def __init__(self) -> None:
        self.senders: list[Sender] = []
        self._released_at: float | None = None

    def wait_sent(self, timeout_s: float = 60.0) -> float:
        """Seconds from the release to the last record acknowledged, of every sender. Close to the
        backlog's time, they would say that the burst, not the workers, set the pace."""
        self._wait_for(lambda sender: sender.done_at is not None, timeout_s, "was not acknowledged")
        if self._released_at is None:
            raise KnnStreamError("the backlog's burst was acknowledged without its release")
        return max(sender.done_at or 0.0 for sender in self.senders) - self._released_at

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until every sender is connected, its records encoded."""
        self._wait_for(lambda sender: sender.ready, timeout_s, "was not ready to send")

    def _wait_for(self, done: Callable[[Sender], bool], timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            for sender in self.senders:
                sender.hear()
            if all(map(done, self.senders)):
                return
            if (error := self.failure()) is not None:
                raise error
            if time.monotonic() > deadline:
                raise KnnStreamError(f"the backlog's burst {what} within {timeout_s:.0f} s")
            time.sleep(0.01)

    def release(self) -> None:
        self._released_at = time.monotonic()
        for sender in self.senders:
            sender.release()

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
        """An error once a sender has failed (each exits 0 only with every record of its share acknowledged)."""
        for index, sender in enumerate(self.senders):
            if sender.process.exitcode not in (None, 0):
                return KnnStreamError(
                    f"the backlog's burst failed (sender {index + 1} of {len(self.senders)}:"
                    f" exit code {sender.process.exitcode}; its error is above)"
                )
        return None

    def close(self) -> None:
        """Stop every sender: all terminated at once, then joined."""
        for sender in self.senders:
            sender.close()
        for sender in self.senders:
            sender.join()


def start_burst(
    bootstrap_servers: str,
    topic: str,
    count: int,
    features: int,
    input_format: InputFormat,
    connect_timeout_s: float = CONNECT_TIMEOUT_S,
    senders: int = 1,
) -> Burst:
    """Start the burst's ``senders`` processes (fewer for fewer records): each makes and encodes
    its share of the ``count`` records, connects (within ``connect_timeout_s``, or it fails), and
    waits for the release."""
    context = multiprocessing.get_context("spawn")
    burst = Burst()
    try:
        for index, (start, stop) in enumerate(shares(count, senders)):
            share = Share(bootstrap_servers, topic, count, start, stop, features, input_format, connect_timeout_s)
            line, its_end = context.Pipe()
            process = context.Process(target=_send_burst, args=(share, its_end), name=f"knnstream-burst-{index}")
            process.daemon = True
            process.start()
            its_end.close()  # the sender's alone: once it ends, the parent's end reads the end of the line
            burst.senders.append(Sender(process, line))
    except BaseException:
        burst.close()
        raise
    return burst


def shares(count: int, senders: int) -> Sequence[tuple[int, int]]:
    """The ``count`` records shared out among ``senders`` (at most one each), as even as they go."""
    senders = max(1, min(senders, count))
    return [(index * count // senders, (index + 1) * count // senders) for index in range(senders)]


def _send_burst(share: Share, line: Connection) -> None:
    """A sender's process: encode its share, connect, wait for the go, send, and say when the
    last record was acknowledged."""
    records = bench_records(share.features, "b", share.count, share.start, share.stop)
    keys = [record.key() for record in records]
    values = [record.value(share.input_format) for record in records]
    del records
    failures: list[str] = []

    def on_failure(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    producer = Producer({
        "bootstrap.servers": share.bootstrap_servers, "linger.ms": 20, "compression.type": "lz4",
        "queue.buffering.max.messages": 1_000_000, "delivery.report.only.error": True, "on_delivery": on_failure,
    })  # fmt: skip
    producer.list_topics(share.topic, timeout=share.connect_timeout_s)  # connected, with the topic's leaders
    line.send(READY)
    try:
        line.recv()  # the go
    except EOFError:
        return  # the benchmark has gone: nothing to send the records for
    produce, topic = producer.produce, share.topic
    for key, value in zip(keys, values, strict=True):
        while True:
            try:
                produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.005)
    remaining = producer.flush(120)
    if remaining or failures:
        raise SystemExit(f"{remaining + len(failures)} of {len(keys)} backlog records were not delivered to {topic}")
    line.send(time.monotonic())


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
