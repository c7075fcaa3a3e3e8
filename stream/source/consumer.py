"""The input's consumer as librdkafka sees it: its configuration, and what the source reads off
its messages and partitions (which partitions, how to name them in a log line, which messages
are errors rather than records).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from stream.settings import ServeSettings

log = logging.getLogger(__name__)
# librdkafka stops fetching a partition for fetch.queue.backoff.ms (1 s by default) each time its
# prefetch queue reaches queued.max.messages.kbytes (64 MiB): on a backlog of 300,000 records of
# 400 bytes the consumer waited out that second again and again (5.5 µs per record, 0.7 µs with
# 10 ms). The queue's size limit, and so the memory it may take, is unchanged.
FETCH_QUEUE_BACKOFF_MS = 10


def consumer_config(settings: ServeSettings, stats_cb: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Explicit commits and offsets, committed reads, cooperative rebalances; ``stats_cb``
    receives librdkafka's statistics (the metrics' consumer lag)."""
    config: dict[str, Any] = {
        **settings.librdkafka_config(),
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "isolation.level": "read_committed",
        "partition.assignment.strategy": "cooperative-sticky",
        "max.poll.interval.ms": settings.max_poll_interval_ms,
        "session.timeout.ms": settings.session_timeout_ms,
        "fetch.queue.backoff.ms": FETCH_QUEUE_BACKOFF_MS,
    }
    if stats_cb is not None:
        config |= {"statistics.interval.ms": settings.statistics_interval_ms, "stats_cb": stats_cb}
    return config


def partition_set(partitions: Sequence[TopicPartition]) -> set[tuple[str, int]]:
    """Each partition as (topic, partition), to compare with others."""
    return {(p.topic, p.partition) for p in partitions}


def partition_set_of(messages: Sequence[Any]) -> set[tuple[str, int]]:
    """The partitions the messages came from, as (topic, partition)."""
    return {(m.topic(), m.partition()) for m in messages}


def describe_partitions(partitions: Sequence[TopicPartition]) -> str:
    """The partitions as a log line names them: ``topic=... partition=...``."""
    return ", ".join(f"topic={p.topic} partition={p.partition}" for p in partitions) or "no partitions"


def is_error(message: Any) -> bool:
    error = message.error()
    if error is None:
        return False
    if error.fatal():
        raise KafkaException(error)
    if error.code() != KafkaError._PARTITION_EOF:
        log.warning(
            "consumer error topic=%s partition=%s offset=%s: %s",
            message.topic(),
            message.partition(),
            message.offset(),
            error,
        )
    return True
