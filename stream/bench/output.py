"""The benchmark's reader of the output topic: it notes when each record's prediction arrived.

The reader (:class:`OutputReader`) reads in child processes of its own, one consumer group among
them, so that reading the predictions of a fast worker takes cores of its own rather than a share
of one: each child times each batch it consumes (``time.monotonic()``, the system's
CLOCK_MONOTONIC, the same clock in every process of the host) and sends the batch's ids and that
time to the benchmark's process, which keeps each id's first arrival.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import queue
import time
import uuid
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue

import psutil
from confluent_kafka import Consumer, TopicPartition

from stream.demo.local_worker import cpu_seconds_of
from stream.errors import KnnStreamError
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS

READER_JOIN_TIMEOUT_S = 15.0  # a child's consumer leaving the group
DRAIN_BATCHES = 1_000  # batches taken in at most before the waits look at their deadline again

# A batch a child read: when it came (time.monotonic()), and its records' ids.
Batch = tuple[float, list[str]]
# A child's share of the topic: the child, the partitions it holds now, and the topic's partitions.
Held = tuple[int, tuple[int, ...], int]


def reader_config(bootstrap: str) -> dict[str, str | int | bool]:
    """The output topic's reader: a group of its own (its processes share it), from the start. It
    reads predictions as fast as two GPUs make them, so it must not wait out librdkafka's default
    second each time its prefetch queue fills, as the worker's consumer does not (with that
    second, a benchmark of two replicas on two GPUs went on reading 2M predictions for 4.6 s after
    the last was made)."""
    return {
        "bootstrap.servers": bootstrap, "group.id": f"bench-reader-{uuid.uuid4().hex}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }  # fmt: skip


class OutputReader:
    """Reads the output topic in ``processes`` child processes, one consumer group; remembers
    when each id's prediction first arrived (:attr:`received_at`, taken in by the waits)."""

    def __init__(self, bootstrap: str, topic: str, processes: int = 1) -> None:
        context = multiprocessing.get_context("spawn")
        # A flag without a lock: a child killed while it held an event's lock (as it looks at it
        # every few milliseconds) would leave close() waiting for the lock for ever.
        self._stop = context.RawValue(ctypes.c_bool, False)
        self._batches: Queue[Batch] = context.Queue()
        self._assignments: Queue[Held] = context.Queue()
        self._held: dict[int, tuple[tuple[int, ...], int]] = {}
        self._children: list[BaseProcess] = []
        self.received_at: dict[str, float] = {}
        config = reader_config(bootstrap)  # one group id for all: Kafka shares the partitions out
        try:
            for index in range(processes):
                args = (config, topic, index, self._batches, self._assignments, self._stop)
                child = context.Process(target=_read_output, args=args, name=f"knnstream-reader-{index}", daemon=True)
                child.start()
                self._children.append(child)
        except BaseException:
            self.close()
            raise

    @property
    def count(self) -> int:
        return len(self.received_at)

    def wait_for(self, count: int, timeout_s: float, failed: Callable[[], BaseException | None] = lambda: None) -> None:
        """Read until ``count`` predictions arrived; stops with what ``failed`` returns once it
        returns an error (the sender's, a worker's), or with a child's failure."""
        deadline = time.monotonic() + timeout_s
        while self.count < count:
            if (error := failed() or self._failure()) is not None:
                raise KnnStreamError(f"stopped after {self.count} of {count} predictions: {error}") from error
            if time.monotonic() > deadline:
                raise KnnStreamError(f"only {self.count} of {count} predictions within {timeout_s:.0f} s")
            self._drain(wait_s=0.005)

    def _drain(self, wait_s: float) -> bool:
        """Take in the batches the children have sent, waiting up to ``wait_s`` for the first;
        whether more may be waiting (``DRAIN_BATCHES`` taken in)."""
        for taken in range(DRAIN_BATCHES):
            try:
                batch = self._batches.get(timeout=wait_s) if taken == 0 and wait_s > 0 else self._batches.get_nowait()
            except queue.Empty:
                return False
            take_in(self.received_at, *batch)
        return True

    def wait_until_assigned(self, timeout_s: float) -> None:
        """Join the reader's group before the clock starts, until its partitions are shared out
        among the children (:meth:`_settled`): the reader's start-up is not the worker's."""
        deadline = time.monotonic() + timeout_s
        while not self._settled():
            if (error := self._failure()) is not None:
                raise error
            if time.monotonic() > deadline:
                raise KnnStreamError(
                    f"the output topic's readers did not share out its partitions within {timeout_s:.0f} s"
                    f" (held by each: {self._held})"
                )
            try:
                child, partitions, of = self._assignments.get(timeout=0.05)
                self._held[child] = (partitions, of)
            except queue.Empty:
                pass
            self._drain(wait_s=0)

    def _settled(self) -> bool:
        """Whether the group's assignment is complete, as the children last reported it.

        A consumer's rebalance callbacks are its own view, and the children's reports come in no
        set order: every child must have had its share assigned once (an empty one, with more
        children than partitions), the shares as last reported must not overlap (a child's share
        from before a rebalance beside another's from after it) and together they must be the
        whole topic (a child's revocation reported, its new share not yet). The same group with
        fewer members, or a rebalance under way, fails one of the three.
        """
        if len(self._held) < len(self._children):
            return False
        shares = [partitions for partitions, _ in self._held.values()]
        whole = {of for _, of in self._held.values()}
        held = {partition for share in shares for partition in share}
        return len(whole) == 1 and sum(map(len, shares)) == len(held) == whole.pop()

    def _failure(self) -> KnnStreamError | None:
        """An error once a child has ended: they read until :meth:`close`."""
        for index, child in enumerate(self._children):
            if child.exitcode is not None:
                return KnnStreamError(
                    f"the output topic's reader {index} ended (exit code {child.exitcode}; its error is above)"
                )
        return None

    def cpu_seconds(self) -> float:
        """CPU seconds the children have used so far (those still running)."""
        seconds = 0.0
        for child in self._children:
            try:
                seconds += cpu_seconds_of(psutil.Process(child.pid))
            except psutil.NoSuchProcess:
                continue  # ended: its failure is reported by the waits
        return seconds

    def forget(self) -> None:
        """Start counting afresh (a long soak would otherwise remember every id), what came before
        taken in first so that it is not counted after."""
        while self._drain(wait_s=0):
            continue
        self.received_at.clear()

    def close(self) -> None:
        """Stop the children and join them."""
        self._stop.value = True
        for child in self._children:
            child.join(READER_JOIN_TIMEOUT_S)
            if child.is_alive():
                child.kill()
                child.join()
        self._batches.close()
        self._assignments.close()


def take_in(received_at: dict[str, float], at: float, keys: list[str]) -> None:
    """Note that ``keys`` arrived ``at``, where they had not arrived earlier."""
    # The earliest time wins: a partition handed to another child in a rebalance is read again
    # from the start (the reader commits nothing), later, and maybe taken in sooner. No call per
    # key but the dictionary's own.
    earlier = received_at.get
    received_at.update({key: at for key in keys if earlier(key, at) >= at})


def _read_output(
    config: dict[str, str | int | bool],
    topic: str,
    index: int,
    batches: Queue[Batch],
    assignments: Queue[Held],
    stop: ctypes.c_bool,
) -> None:
    """A reader's child: consume until ``stop`` (or until the benchmark has gone), each batch timed once."""
    # What is still queued when it stops is not wanted: it exits without waiting for the queues'
    # pipes to take it (which waits for a reader that may have stopped reading).
    batches.cancel_join_thread()
    assignments.cancel_join_thread()
    consumer = Consumer(config)
    try:
        of = _partitions_of(consumer, topic, stop)

        def assigned(_consumer: Consumer, partitions: list[TopicPartition]) -> None:
            assignments.put((index, tuple(sorted(p.partition for p in partitions)), of))

        def revoked(_consumer: Consumer, _partitions: list[TopicPartition]) -> None:
            assignments.put((index, (), of))

        consumer.subscribe([topic], on_assign=assigned, on_revoke=revoked, on_lost=revoked)
        parent = multiprocessing.parent_process()
        while not stop.value and parent is not None and parent.is_alive():
            # A batch consume waits for as many messages as it asks for: a short timeout, so that
            # each batch is timed when it comes, not when 10,000 have come.
            messages = consumer.consume(num_messages=10_000, timeout=0.005)
            if not messages:
                continue
            at = time.monotonic()
            # A prediction is keyed like its record, i.e. by the record's id: reading the key,
            # not parsing the value, keeps each child well ahead of its share of the worker.
            keys = [
                key.decode() for message in messages if message.error() is None and (key := message.key()) is not None
            ]
            if keys:
                batches.put((at, keys))
    finally:
        consumer.close()


def _partitions_of(consumer: Consumer, topic: str, stop: ctypes.c_bool) -> int:
    """The topic's partitions, once its metadata has them (a topic just created may not have them yet)."""
    while not stop.value:
        metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return len(metadata.partitions)
        time.sleep(0.1)
    return 0
