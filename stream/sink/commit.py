"""Completing a batch: the one place where output delivery and offset commits are ordered.

Each completer has two steps, called in this order by the pipeline: ``deliver`` (on the batch
thread) and ``commit`` (on the consumer's thread, only after ``deliver`` returned); ``start`` is
called once before the first batch is consumed.

at-least-once (default)
    deliver: produce every prediction and dead letter → flush until the broker acknowledged all
    of them. commit: commit the batch's offsets. A failure anywhere before the commit leaves the
    offsets where they were, so the batch is consumed again (duplicates possible, losses not).

exactly-once (``--guarantee exactly-once``)
    deliver: begin a transaction → produce → send the batch's offsets to the transaction →
    commit the transaction. commit: nothing left to do. Consumers reading with
    ``isolation.level=read_committed`` see every batch's output once, together with its offsets,
    or not at all. Errors are handled by kind: retriable → retry the commit; abortable → abort
    and rewind; fenced (another producer took this ``transactional.id``) → stop the worker
    (:class:`ProducerFencedError`: a new producer would fence the other instance in turn);
    fatal errors, and a commit whose outcome stays unknown → a new producer at once: its
    initialisation settles the old transaction on the broker (committed or aborted). The source
    then rewinds to the group's committed offsets, not to the batch's first ones, so a batch
    whose transaction did commit after all is not processed twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException, Producer

from stream.batching.microbatch import MicroBatch
from stream.errors import DeliveryError, KnnStreamError
from stream.records.encode import Outbound
from stream.sink.kafka import KafkaSink, produce_outbound

log = logging.getLogger(__name__)

_FENCED = frozenset({KafkaError._FENCED, KafkaError.PRODUCER_FENCED})


def _unobserved(stage: str, seconds: float) -> None:
    """No stage timer (a completer built without metrics)."""


class ProducerFencedError(KnnStreamError):
    """Another instance started with this ``transactional.id``: this one must stop, not fight back."""


class BatchCompleter(Protocol):
    def start(self) -> None: ...

    def deliver(self, batch: MicroBatch, outbound: Outbound) -> None: ...

    def commit(self, batch: MicroBatch) -> None: ...

    def close(self) -> None: ...


class AtLeastOnce:
    """Deliver, then commit."""

    def __init__(
        self, sink: KafkaSink, commit: Callable[[MicroBatch], None], observe: Callable[[str, float], None] = _unobserved
    ) -> None:
        self._sink = sink
        self._commit = commit
        self._observe = observe  # each stage's seconds: produce, acknowledge

    def start(self) -> None:
        """The producer connects before the first batch (:meth:`KafkaSink.start`)."""
        self._sink.start()

    def deliver(self, batch: MicroBatch, outbound: Outbound) -> None:
        times = self._sink.deliver(outbound)  # returns only when every record is acknowledged
        self._observe("produce", times.produce_s)
        self._observe("acknowledge", times.acknowledge_s)

    def commit(self, batch: MicroBatch) -> None:
        self._commit(batch)  # only now do the offsets move

    def close(self) -> None:
        self._sink.close()


class ExactlyOnce:
    """Output and offsets in one Kafka transaction."""

    def __init__(
        self,
        producer_config: dict[str, Any],
        group_metadata: Callable[[], Any],
        timeout_s: float,
        commit_retries: int = 5,
        observe: Callable[[str, float], None] = _unobserved,
    ) -> None:
        self._config = dict(producer_config)
        self._observe = observe  # each stage's seconds: produce, acknowledge (the transaction's commit)
        self._group_metadata = group_metadata
        self._timeout_s = timeout_s
        self._commit_retries = commit_retries
        self._producer: Producer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config)
            producer.init_transactions(self._timeout_s)
            self._producer = producer
        return self._producer

    def start(self) -> None:
        """Initialise the producer before the consumer joins its group.

        This fences an earlier producer of the same ``transactional.id`` (a crashed predecessor)
        and aborts its open transaction at once. Left open, a transaction that already holds
        offsets keeps the group's committed offsets unstable, and the consumer waiting, until
        ``transaction.timeout.ms``. When the broker cannot be reached yet, the first batch tries again.
        """
        try:
            self.producer  # noqa: B018 - built on first use: init_transactions
        except KafkaException as exc:
            log.warning("cannot initialise the transactional producer yet: %s", exc.args[0])

    def commit(self, batch: MicroBatch) -> None:
        """The offsets were committed with the transaction."""

    def deliver(self, batch: MicroBatch, outbound: Outbound) -> None:
        producer = self.producer
        try:
            producer.begin_transaction()
            started = time.perf_counter()
            produce_outbound(producer, outbound)
            produced = time.perf_counter()
            producer.send_offsets_to_transaction(batch.next_offsets(), self._group_metadata(), self._timeout_s)
            self._commit_transaction(producer)
            self._observe("produce", produced - started)
            self._observe("acknowledge", time.perf_counter() - produced)
        except KafkaException as exc:
            self._recover(producer, exc)
            raise DeliveryError(f"transaction of {len(outbound)} records failed: {exc.args[0]}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout_s)
            self._producer = None

    def _commit_transaction(self, producer: Producer) -> None:
        """Commit; a retriable failure (a timeout) is retried, as the commit may be under way."""
        for attempt in range(1, self._commit_retries + 1):
            try:
                producer.commit_transaction(self._timeout_s)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == self._commit_retries:
                    raise
                log.warning("retrying the transaction commit (attempt %d): %s", attempt, exc.args[0])
                time.sleep(min(2.0, 0.2 * attempt))

    def _recover(self, producer: Producer, exc: KafkaException) -> None:
        """Stop when fenced; abort an abortable transaction; otherwise replace the producer now.

        Only a transaction that can be is aborted: after a commit that timed out, the commit may
        still complete on the broker. A fatal error raised by ``produce`` names no cause; an
        abort raises the producer's fatal error itself, e.g. fenced, and a fenced producer must
        never be replaced: its successor would fence the instance that took over in turn.
        """
        error = exc.args[0]
        if error.code() not in _FENCED and (error.fatal() or _abortable(error)):
            try:
                log.warning("aborting the transaction: %s", error)
                producer.abort_transaction(self._timeout_s)
                if not error.fatal():
                    return
            except KafkaException as abort_exc:
                error = abort_exc.args[0] if abort_exc.args[0].fatal() else error
        if error.code() in _FENCED:
            self._producer = None
            raise ProducerFencedError(
                f"another instance took over transactional.id {self._config['transactional.id']!r}"
                f" and fenced this one ({error.str()}); stopping"
            ) from exc
        log.error("the transaction's outcome is unknown (%s); a new producer settles it", error)
        self._replace_producer()

    def _replace_producer(self) -> None:
        """A new producer of the same ``transactional.id``: its initialisation fences the old
        one and waits until the old transaction is committed or aborted on the broker."""
        self._producer = None
        try:
            self.producer  # noqa: B018 - built on first use: init_transactions
        except KafkaException as exc:
            log.warning("cannot initialise a new transactional producer yet: %s", exc.args[0])


def _abortable(error: KafkaError) -> bool:
    """Whether aborting is the way out: a transaction that asks for it, or one that never got as
    far as a commit. A retriable error left after the retries (a commit that timed out) and a
    fatal one leave the outcome to a new producer."""
    return bool(error.txn_requires_abort() or not (error.retriable() or error.fatal()))
