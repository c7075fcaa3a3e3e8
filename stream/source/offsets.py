"""At-least-once offset commits that do not hold up the consume loop.

A delivered batch's offsets are recorded here and sent to the group coordinator at once
(``asynchronous=True``); the broker's answer comes back through the consumer's ``on_commit``
callback, on the consume loop's thread, at a later poll. Every commit carries the newest
delivered offset of every assigned partition whose commit the broker has not yet confirmed, so
a failed commit is repaired by the next one; when no batch follows, :meth:`retry_due` says that
one is owed and the consume loop makes it.

At most one commit is unanswered at a time: when the broker has not answered the previous one
yet, the next waits for its own answer. A crash thus leaves at most one batch more delivered
and not committed than the batches in flight.

Where the committed offsets must be on the broker before anything else happens, the commit is
made synchronously instead (:meth:`flush`): before a revoked partition moves to its new owner,
before a rewind reads the committed offsets back, and when the worker stops.

A commit that fails, or an older commit that reaches the broker after a newer one, can only
leave the committed offset behind what was delivered, never ahead of it: records may be
predicted twice, never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

Position = tuple[str, int]


class OffsetCommits:
    """The newest delivered offset of each partition, and what the broker confirmed of them."""

    def __init__(self) -> None:
        self._delivered: dict[Position, int] = {}  # next offset to read, after the last delivered record
        self._confirmed: dict[Position, int] = {}  # the highest such offset the broker confirmed
        self._failed = False  # a commit failed since the last one was sent
        self._unanswered = 0  # asynchronous commits sent whose answer has not come back

    def record(self, offsets: Iterable[TopicPartition]) -> None:
        """A batch was delivered: these are the offsets after its last records."""
        for position in offsets:
            key = (position.topic, position.partition)
            self._delivered[key] = max(position.offset, self._delivered.get(key, -1))

    def unconfirmed(self, assigned: Iterable[Position]) -> list[TopicPartition]:
        """The delivered offsets of assigned partitions that the broker has not confirmed."""
        return [
            TopicPartition(topic, partition, offset)
            for (topic, partition) in assigned
            if (offset := self._delivered.get((topic, partition), -1)) > self._confirmed.get((topic, partition), -1)
        ]

    def commit_async(self, consumer: Consumer, assigned: Iterable[Position]) -> None:
        """Send the unconfirmed offsets; the answer arrives in :meth:`on_commit`. While the
        previous commit is unanswered, this one waits for the broker instead."""
        offsets = self.unconfirmed(assigned)
        self._failed = False
        if not offsets:
            return
        try:
            if self._unanswered:
                self._commit_sync(consumer, offsets)
            else:
                consumer.commit(offsets=offsets, asynchronous=True)
                self._unanswered += 1
        except KafkaException as exc:
            self._note_failure(exc.args[0], offsets)

    def retry_due(self) -> bool:
        """Whether a commit failed and no commit was sent since."""
        return self._failed

    def flush(self, consumer: Consumer, positions: Iterable[Position]) -> None:
        """Commit the unconfirmed offsets of ``positions`` and wait for the broker's answer.

        Raises :class:`KafkaException` when the broker refuses them.
        """
        offsets = self.unconfirmed(positions)
        if offsets:
            self._commit_sync(consumer, offsets)

    def forget(self, positions: Iterable[Position]) -> None:
        """The partitions moved to another member: their offsets are its business now."""
        for position in positions:
            self._delivered.pop(position, None)
            self._confirmed.pop(position, None)

    def on_commit(self, error: KafkaError | None, partitions: Sequence[TopicPartition]) -> None:
        """The consumer's ``on_commit`` callback: the broker's answer to an asynchronous commit."""
        self._unanswered = max(0, self._unanswered - 1)
        if error is not None:
            self._note_failure(error, partitions)
            return
        for position in partitions:
            if position.error is not None:
                self._note_failure(position.error, [position])
        self._confirm(partitions)

    def _commit_sync(self, consumer: Consumer, offsets: list[TopicPartition]) -> None:
        committed: list[TopicPartition] = consumer.commit(offsets=offsets, asynchronous=False) or offsets
        self._confirm(committed)
        refused = [p for p in committed if p.error is not None]
        if refused:
            raise KafkaException(refused[0].error)

    def _confirm(self, partitions: Sequence[TopicPartition]) -> None:
        """Record the offsets the broker took (a partition with an error it did not)."""
        for position in partitions:
            key = (position.topic, position.partition)
            if position.error is None and key in self._delivered and position.offset >= 0:
                self._confirmed[key] = max(position.offset, self._confirmed.get(key, -1))

    def _note_failure(self, error: KafkaError, partitions: Sequence[TopicPartition]) -> None:
        if error.code() == KafkaError._NO_OFFSET:
            return  # nothing to commit: not a failure
        self._failed = True
        for position in partitions:
            log.warning(
                "offset commit failed topic=%s partition=%d offset=%d: %s; it is sent again",
                position.topic,
                position.partition,
                position.offset,
                error,
            )
