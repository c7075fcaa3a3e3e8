"""Completing a batch: the one place where output delivery and offset commits are ordered.

Each completer has two steps, called in this order by the pipeline: ``deliver`` (on the batch
thread) and ``commit`` (on the consumer's thread, only after ``deliver`` returned).

at-least-once (default)
    deliver: produce every prediction and dead letter → flush until the broker acknowledged all
    of them. commit: commit the batch's offsets. A failure anywhere before the commit leaves the
    offsets where they were, so the batch is consumed again (duplicates possible, losses not).

exactly-once (``--guarantee exactly-once``)
    deliver: begin a transaction → produce → send the batch's offsets to the transaction →
    commit the transaction. commit: nothing left to do. Consumers reading with
    ``isolation.level=read_committed`` see every batch's output once, together with its offsets,
    or not at all. Errors are handled by kind: retriable → retry the commit; abortable → abort
    and rewind; fatal → a new producer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaException, Producer

from stream.batching.microbatch import MicroBatch
from stream.errors import DeliveryError
from stream.sink.encode import OutboundRecord
from stream.sink.kafka import KafkaSink

log = logging.getLogger(__name__)


class BatchCompleter(Protocol):
    def deliver(self, batch: MicroBatch, records: Sequence[OutboundRecord]) -> None: ...

    def commit(self, batch: MicroBatch) -> None: ...

    def close(self) -> None: ...


class AtLeastOnce:
    """Deliver, then commit."""

    def __init__(self, sink: KafkaSink, commit: Callable[[MicroBatch], None]) -> None:
        self._sink = sink
        self._commit = commit

    def deliver(self, batch: MicroBatch, records: Sequence[OutboundRecord]) -> None:
        self._sink.deliver(records)  # returns only when every record is acknowledged

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
    ) -> None:
        self._config = dict(producer_config)
        self._group_metadata = group_metadata
        self._timeout_s = timeout_s
        self._commit_retries = commit_retries
        self._producer: Producer | None = None

    @property
    def producer(self) -> Producer:
        if self._producer is None:
            producer = Producer(self._config, logger=log)
            producer.init_transactions(self._timeout_s)
            self._producer = producer
        return self._producer

    def commit(self, batch: MicroBatch) -> None:
        """The offsets were committed with the transaction."""

    def deliver(self, batch: MicroBatch, records: Sequence[OutboundRecord]) -> None:
        producer = self.producer
        try:
            producer.begin_transaction()
            for record in records:
                _produce(producer, record)
            producer.send_offsets_to_transaction(batch.next_offsets(), self._group_metadata(), self._timeout_s)
            self._commit_transaction(producer)
        except KafkaException as exc:
            self._recover(exc)
            raise DeliveryError(f"transaction of {len(records)} records failed: {exc.args[0]}") from exc

    def close(self) -> None:
        if self._producer is not None:
            self._producer.flush(self._timeout_s)
            self._producer = None

    def _commit_transaction(self, producer: Producer) -> None:
        for attempt in range(1, self._commit_retries + 1):
            try:
                producer.commit_transaction(self._timeout_s)
                return
            except KafkaException as exc:
                if not exc.args[0].retriable() or attempt == self._commit_retries:
                    raise
                log.warning("retrying the transaction commit (attempt %d): %s", attempt, exc.args[0])
                time.sleep(min(2.0, 0.2 * attempt))

    def _recover(self, exc: KafkaException) -> None:
        """Abort what can be aborted; after a fatal error (e.g. fenced) start a new producer."""
        error = exc.args[0]
        if not error.fatal():
            log.warning("aborting the transaction: %s", error)
            try:
                self.producer.abort_transaction(self._timeout_s)
                return
            except KafkaException as abort_exc:
                log.error("abort failed, starting a new producer: %s", abort_exc.args[0])
        else:
            log.error("fatal producer error, starting a new producer: %s", error)
        self._producer = None


def _produce(producer: Producer, record: OutboundRecord) -> None:
    while True:
        try:
            producer.produce(record.topic, value=record.value, key=record.key, headers=list(record.headers))
            return
        except BufferError:
            producer.poll(0.1)
