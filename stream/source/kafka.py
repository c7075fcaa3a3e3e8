"""The long-lived Kafka consumer of feature records.

One consumer for the life of the worker (built on first use, never in a constructor); it
joins the consumer group with the first batch it is asked for, once the worker is ready to
consume, so a worker still starting (or failing to start) holds no partitions. Automatic
commits and automatic offset storage are off: offsets are committed explicitly, after the
predictions are acknowledged (see :mod:`stream.sink.commit`).

While batches are in flight the consumer keeps polling: it reads ahead the next batch, then
waits for the batch in flight without polling for a short while (:data:`HOLD_BEFORE_PAUSE_S`),
and only then pauses the partitions and polls on, so a slow batch never makes it leave the group
(``max.poll.interval.ms``). Pausing is kept for slow batches because it is not free: librdkafka
drops a paused partition's prefetched records, and after the resume the next batch waits about
half a second for a new fetch. Records read ahead count their batch's wait from when they were
read, and while the next batch fills, the consume loop commits the batches delivered meanwhile
between the polls of its wait. A partition revoked by a rebalance is handed over only once the
batches in flight are complete (at-least-once: with the offsets of that partition committed up
to the last batch delivered), and records of partitions no longer assigned are dropped from the
next batch: their new owner reads them from the committed offset. A commit refused because the
group is rebalancing is made again once it has settled, for the partitions still assigned.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future
from concurrent.futures import wait as futures_wait
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from stream.batching.microbatch import MicroBatch, collect_batch
from stream.errors import KafkaSetupError
from stream.settings import ServeSettings
from stream.source.consumer import consumer_config, describe_partitions, is_error, partition_set, partition_set_of

log = logging.getLogger(__name__)
# How long a full read-ahead waits for the batch in flight before pausing the partitions (a
# rebalance waits as long for this member to poll); at most a tenth of max.poll.interval.ms.
HOLD_BEFORE_PAUSE_S = 2.0
# A read-ahead poll waits this long for its records at most (a batch consume waits for all it asks
# for): the batch in flight is seen done, and committed, at most this late.
READ_AHEAD_POLL_S = 0.005

# The batches handed out and not yet committed, oldest first, each with its delivery.
InFlight = Callable[[], Sequence[tuple[MicroBatch, "Future[Any]"]]]
# A commit refused with these is made again once the group's rebalance is over.
_REBALANCING = frozenset({KafkaError.ILLEGAL_GENERATION, KafkaError.REBALANCE_IN_PROGRESS})


class KafkaSource:
    """Micro-batches of the input topic, explicit commits, rewinds after a failed delivery."""

    def __init__(self, settings: ServeSettings, stats_cb: Callable[[str], None] | None = None) -> None:
        self._settings = settings
        self._stats_cb = stats_cb
        self._consumer: Consumer | None = None
        self._subscribed = False
        self._strays: list[Any] = []  # records returned by a poll while a batch was in flight
        self._strays_since = 0.0  # when the oldest of them was read (see _keep)
        self._group_metadata: Any = None  # as the consumer thread last saw it; see group_metadata()
        self._in_flight: InFlight = list  # the batches handed out and not yet committed; see track()
        self._revocations = 0  # how many times partitions were revoked (or lost)

    @property
    def consumer(self) -> Consumer:
        if self._consumer is None:
            self._consumer = Consumer(consumer_config(self._settings, self._stats_cb))
        return self._consumer

    def check_topics(self, topics: Sequence[str], timeout_s: float = 10.0) -> None:
        """Fail with one clear message when the broker is unreachable or a topic is missing."""
        try:
            metadata = self.consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            self.close()
            raise KafkaSetupError(
                f"cannot reach Kafka at {self._settings.bootstrap_servers} within {timeout_s:.0f} s"
                f" ({exc.args[0].str()}): is the broker running and --bootstrap-servers right?"
            ) from exc
        missing = [topic for topic in topics if topic not in metadata.topics]
        if missing:
            self.close()
            raise KafkaSetupError(
                f"missing topic(s) {', '.join(missing)} on {self._settings.bootstrap_servers}: create them with"
                " `knnstream topics create` (its --input-topic, --output-topic, --dlq-topic), or start with"
                " --create-topics in development"
            )

    def track(self, in_flight: InFlight) -> None:
        """Where to find the batches handed out and not yet committed (oldest first, each with
        its delivery): a rebalance waits for them before partitions move."""
        self._in_flight = in_flight

    def next_batch(
        self, idle_wait_s: float = 0.5, between_polls: Callable[[], object] | None = None
    ) -> MicroBatch | None:
        """The next micro-batch, or ``None`` when no record came within ``idle_wait_s``.

        ``between_polls`` runs on this thread between the polls of the batch's wait (committing
        the batches delivered meanwhile, :meth:`~stream.serve.pipeline.Pipeline.commit_delivered`).
        """
        if not self._subscribed:
            self.consumer.subscribe([self._settings.input_topic], on_assign=self._on_assign, on_revoke=self._on_revoke)
            self._subscribed = True
        max_wait_s = self._settings.batch_max_wait_ms / 1000
        revocations = self._revocations
        read_since = self._strays_since if self._strays else None  # read-ahead records have waited already
        batch = collect_batch(
            self._poll,
            self._settings.batch_max_records,
            max_wait_s,
            idle_wait_s,
            read_since=read_since,
            between_polls=between_polls,
        )
        if batch is None:
            return None
        # Read-ahead records of revoked partitions are dropped as they are revoked; only a
        # revocation while this batch was filling can leave some in it.
        owned = batch.messages if self._revocations == revocations else self._owned(batch.messages)
        self._refresh_group_metadata(self.consumer)
        return MicroBatch(owned, batch.opened_at) if owned else None

    def wait_paused(self, future: Future[Any], on_tick: Callable[[], None]) -> None:
        """Keep polling until ``future`` (a batch in flight) is done.

        The polls read ahead the next batch (at most one batch of records); once it is full the
        consumer waits for ``future`` without polling, for at most :data:`HOLD_BEFORE_PAUSE_S`;
        then the partitions are paused and polling goes on without reading, so a slow batch never
        makes the consumer leave the group.
        """
        consumer = self.consumer
        paused: list[TopicPartition] = []
        hold_s = min(HOLD_BEFORE_PAUSE_S, self._settings.max_poll_interval_ms / 10_000)
        full_since: float | None = None
        try:
            while not future.done():
                on_tick()
                room = self._settings.batch_max_records - len(self._strays)
                if room > 0:
                    # Poll first, then add: a rebalance callback run by this poll replaces the
                    # list (dropping revoked partitions' records), and what the poll returned
                    # must go into the new one, not the discarded one.
                    self._keep(self._poll_consumer(min(room, 10_000), READ_AHEAD_POLL_S))
                    full_since = None
                else:
                    full_since = full_since if full_since is not None else time.monotonic()
                    if not paused and time.monotonic() - full_since < hold_s:
                        futures_wait([future], timeout=0.05)
                    else:
                        paused = paused or self._pause(consumer)
                        message = consumer.poll(0.1)
                        if message is not None and not is_error(message):
                            self._keep([message])
                self._refresh_group_metadata(consumer)
        finally:
            if paused:
                still_assigned = partition_set(consumer.assignment())
                consumer.resume([p for p in paused if (p.topic, p.partition) in still_assigned])

    def commit(self, batch: MicroBatch) -> None:
        """Synchronously commit the offsets after every record of the batch, on the partitions
        still assigned (a revoked one was committed as it was revoked, or is its new owner's).

        A commit refused because the group is rebalancing is made again once it has settled,
        for at most a session timeout.
        """
        deadline = time.monotonic() + self._settings.session_timeout_ms / 1000
        while True:
            assigned = partition_set(self.consumer.assignment())
            offsets = [p for p in batch.next_offsets() if (p.topic, p.partition) in assigned]
            try:
                if offsets:
                    self.consumer.commit(offsets=offsets, asynchronous=False)
                return
            except KafkaException as exc:
                if exc.args[0].code() not in _REBALANCING or time.monotonic() > deadline:
                    raise
                log.info("commit refused while the group rebalances (%s); committing once it settled", exc.args[0])
                self._poll_paused(0.2)

    def rewind(self, batches: Sequence[MicroBatch]) -> None:
        """Seek back so the batches' records are consumed again, from the group's committed offsets.

        A failed batch may still have been completed on the broker: a transaction whose commit
        timed out on its way can be committed by its coordinator all the same, with the batch's
        offsets. The committed offsets (read as stable, ``isolation.level=read_committed``) say
        where the group really stands; a partition the group has no offset for yet goes back
        to the earliest first offset of the batches, and so does every partition when the broker
        cannot answer. The batches are rewound together: one at a time, a later batch's first
        offset would win over an earlier one's, and the records between them would be skipped.
        """
        together = MicroBatch([message for batch in batches for message in batch.messages])
        rewound = partition_set_of(together.messages)
        self._strays = [m for m in self._strays if (m.topic(), m.partition()) not in rewound]
        for position in self._committed_or(together.first_offsets()):
            try:
                self.consumer.seek(position)
            except KafkaException as exc:
                log.warning(
                    "cannot rewind topic=%s partition=%d offset=%d (partition moved away?): %s",
                    position.topic,
                    position.partition,
                    position.offset,
                    exc.args[0],
                )

    def _committed_or(self, first: list[TopicPartition]) -> list[TopicPartition]:
        """The group's committed offset of each partition, or ``first``'s where there is none."""
        try:
            committed = self.consumer.committed(first, timeout=self._settings.session_timeout_ms / 1000)
        except KafkaException as exc:
            log.warning("cannot read the committed offsets (%s); rewinding to the batch's first offsets", exc.args[0])
            return first
        by_partition = {(p.topic, p.partition): p for p in committed if p.error is None and p.offset >= 0}
        return [by_partition.get((p.topic, p.partition), p) for p in first]

    def group_metadata(self) -> Any:
        """The consumer group metadata (member id, generation) for a transaction's offsets.

        Called from the batch thread, so it returns what the consumer thread last read (before
        the batch, at every poll while it is in flight, and in the rebalance callbacks): a call
        to the consumer from another thread waits for a gap between polls, and the polling loop
        of :meth:`wait_paused` leaves none. A member that lost its partitions thus sends its
        offsets with its old identity, and the group coordinator fences the transaction.
        Only exactly-once keeps it up to date; at-least-once, which sends no offsets with a
        transaction, reads it from the consumer when asked (from the consumer's thread only).
        """
        if self._group_metadata is None:
            return self.consumer.consumer_group_metadata()
        return self._group_metadata

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
            self._subscribed = False

    def _poll(self, max_messages: int, timeout_s: float) -> list[Any]:
        if self._strays:
            taken, self._strays = self._strays[:max_messages], self._strays[max_messages:]
            return taken
        return self._poll_consumer(max_messages, timeout_s)

    def _keep(self, messages: list[Any]) -> None:
        """Keep records read ahead for the next batch, noting when the first of them was read.

        Records left over when a batch took fewer than there were keep the older time, and so do
        those left when a rewind or a revocation drops some: the next batch's wait then ends
        early rather than late.
        """
        if messages and not self._strays:
            self._strays_since = time.monotonic()
        self._strays.extend(messages)

    def _poll_consumer(self, max_messages: int, timeout_s: float) -> list[Any]:
        messages = self.consumer.consume(num_messages=max_messages, timeout=timeout_s)
        return [message for message in messages if message.error() is None or not is_error(message)]

    def _owned(self, messages: Sequence[Any]) -> list[Any]:
        assigned = partition_set(self.consumer.assignment())
        owned = [m for m in messages if (m.topic(), m.partition()) in assigned]
        if len(owned) < len(messages):
            log.info("dropped %d records of partitions revoked while the batch was filling", len(messages) - len(owned))
        return owned

    def _pause(self, consumer: Consumer) -> list[TopicPartition]:
        """Pause every assigned partition; returns them, to be resumed."""
        assigned: list[TopicPartition] = consumer.assignment()
        consumer.pause(assigned)
        return assigned

    def _poll_paused(self, duration_s: float) -> None:
        """Poll without reading (the partitions paused) for a while: lets a rebalance under way complete."""
        consumer = self.consumer
        paused = self._pause(consumer)
        try:
            deadline = time.monotonic() + duration_s
            while time.monotonic() < deadline:
                message = consumer.poll(0.05)
                if message is not None and not is_error(message):
                    self._keep([message])
        finally:
            assigned = partition_set(consumer.assignment())
            consumer.resume([p for p in paused if (p.topic, p.partition) in assigned])

    def _refresh_group_metadata(self, consumer: Consumer) -> None:
        """Exactly-once: keep the metadata a transaction sends (a call per poll, so only there)."""
        if self._settings.guarantee == "exactly-once":
            self._group_metadata = consumer.consumer_group_metadata()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if partitions:
            # librdkafka keeps a partition's pause across assignments: one revoked while paused
            # (a batch was in flight) would come back paused, and never be read again.
            consumer.resume(partitions)
        self._refresh_group_metadata(consumer)
        log.info("assigned %s", describe_partitions(partitions))

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        """Let the batches in flight finish (and commit) before their partitions move."""
        self._revocations += 1
        self._refresh_group_metadata(consumer)  # the new generation, or no member id when the partitions were lost
        delivered: list[MicroBatch] = []
        for batch, done in self._in_flight():
            if not done.done():
                log.info("waiting for the batches in flight before giving up %s", describe_partitions(partitions))
            try:
                done.result()
            except Exception as exc:  # noqa: BLE001 - the consume loop reports it; here it only must not escape
                log.warning("a batch in flight failed during a rebalance: %s", exc)
                break  # no later batch was delivered
            delivered.append(batch)
        self._commit_revoked(consumer, partitions, delivered)
        revoked = partition_set(partitions)
        self._strays = [m for m in self._strays if (m.topic(), m.partition()) not in revoked]
        log.info("revoked %s", describe_partitions(partitions))

    def _commit_revoked(
        self, consumer: Consumer, partitions: list[TopicPartition], delivered: Iterable[MicroBatch]
    ) -> None:
        """At-least-once: commit the delivered batches' offsets of the partitions being revoked,
        before their new owner reads the committed offsets (exactly-once: the transactions did)."""
        if self._settings.guarantee != "at-least-once":
            return
        revoked = partition_set(partitions)
        latest: dict[tuple[str, int], TopicPartition] = {}
        for batch in delivered:  # oldest first: a later batch's offset wins
            latest |= {(p.topic, p.partition): p for p in batch.next_offsets() if (p.topic, p.partition) in revoked}
        if not latest:
            return
        try:
            consumer.commit(offsets=list(latest.values()), asynchronous=False)
        except KafkaException as exc:
            log.warning("cannot commit the revoked partitions (their new owner reads them again): %s", exc.args[0])
