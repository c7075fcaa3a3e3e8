"""Consumer lag per partition, read from librdkafka's statistics.

librdkafka emits a JSON document every ``statistics.interval.ms`` through ``stats_cb``, on
the thread that polls the consumer. Its ``consumer_lag`` is the distance between the end of
the partition and the group's committed offset; before the group has committed anything it
is -1, and the lag is counted from the start of the log instead (the worker's
``auto.offset.reset`` is ``earliest``), so a worker that never commits still shows lag.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    lag: int


def partition_lags(stats: Mapping[str, Any]) -> list[PartitionLag]:
    """The lag of every partition assigned to this consumer whose end offset is known."""
    if stats.get("type") != "consumer":
        return []
    lags = []
    for topic, topic_stats in stats.get("topics", {}).items():
        for partition_stats in topic_stats.get("partitions", {}).values():
            lag = _lag(partition_stats)
            if lag is not None:
                lags.append(PartitionLag(topic, int(partition_stats["partition"]), lag))
    return lags


def _lag(partition: Mapping[str, Any]) -> int | None:
    if int(partition.get("partition", -1)) < 0 or not partition.get("desired", False):
        return None  # the internal unassigned partition, or one this consumer no longer owns
    end = _first_valid(partition.get("ls_offset"), partition.get("hi_offset"))
    if end is None:
        return None  # no fetch or offset query has answered yet
    reported = partition.get("consumer_lag", -1)
    if isinstance(reported, int) and reported >= 0:
        return reported
    committed = partition.get("committed_offset", -1)
    if isinstance(committed, int) and committed >= 0:
        return max(0, end - committed)
    start = _first_valid(partition.get("lo_offset"))
    return None if start is None else max(0, end - start)


def _first_valid(*offsets: Any) -> int | None:
    for offset in offsets:
        if isinstance(offset, int) and offset >= 0:
            return offset
    return None
