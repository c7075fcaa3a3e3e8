"""The range a replay reads: ``PARTITION:OFFSET`` lists, ISO times, and their resolution to offsets.

A range is half-open per partition: from its first offset up to, not including, its end
offset. Times resolve through the broker's time index (``offsets_for_times``) to the first
offset whose record time is at or after the given time, so ``--from-time A --to-time B``
reads the records timed in ``[A, B)``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

from stream.errors import ConfigurationError

log = logging.getLogger(__name__)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class RangeSpec:
    """The range as given: offsets per partition or a time, for each end (no end: the log's end)."""

    from_offsets: Mapping[int, int] | None = None
    from_time_ms: int | None = None
    to_offsets: Mapping[int, int] | None = None
    to_time_ms: int | None = None


@dataclass(frozen=True)
class PartitionRange:
    """Offsets ``[start, end)`` of one partition."""

    partition: int
    start: int
    end: int

    @property
    def size(self) -> int:
        return max(0, self.end - self.start)


class TopicView(Protocol):
    """What resolving a range asks of the broker about the input topic."""

    def partitions(self) -> list[int]: ...

    def watermarks(self, partition: int) -> tuple[int, int]: ...

    def offsets_for_time(self, partitions: Sequence[int], time_ms: int) -> dict[int, int | None]: ...


def parse_offsets(text: str) -> dict[int, int]:
    """``"0:100,1:250"`` → ``{0: 100, 1: 250}``."""
    offsets: dict[int, int] = {}
    for item in (part.strip() for part in text.split(",")):
        partition, separator, offset = item.partition(":")
        if not separator or not partition.strip().isdigit() or not offset.strip().isdigit():
            raise ConfigurationError(f"{item!r} is not PARTITION:OFFSET (two non-negative integers)")
        number = int(partition)
        if number in offsets:
            raise ConfigurationError(f"partition {number} appears twice in {text!r}")
        offsets[number] = int(offset)
    return offsets


def parse_time(text: str) -> int:
    """ISO 8601 text → Unix milliseconds; a time without a UTC offset is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise ConfigurationError(f"{text!r} is not an ISO 8601 time, e.g. 2026-01-31T12:00:00Z") from exc
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(milliseconds=1)


def resolve_ranges(spec: RangeSpec, topic: TopicView) -> list[PartitionRange]:
    """The offset range of every selected partition, clamped to what the log holds now."""
    partitions = _selected_partitions(spec, topic.partitions())
    starts = _bound(spec.from_offsets, spec.from_time_ms, partitions, topic)
    ends = _bound(spec.to_offsets, spec.to_time_ms, partitions, topic)
    ranges = []
    for partition in partitions:
        low, high = topic.watermarks(partition)
        start, end = starts.get(partition, high), ends.get(partition, high)
        if start < low:
            log.warning("partition %d: offsets before %d are gone; starting there instead of %d", partition, low, start)
            start = low
        if end > high:
            log.warning("partition %d: the log ends at %d; stopping there instead of %d", partition, high, end)
            end = high
        ranges.append(PartitionRange(partition, start, max(start, end)))
    return ranges


def _selected_partitions(spec: RangeSpec, existing: Sequence[int]) -> list[int]:
    """The partitions an offset list names (both lists must agree), or every partition."""
    named = [set(offsets) for offsets in (spec.from_offsets, spec.to_offsets) if offsets is not None]
    if len(named) == 2 and named[0] != named[1]:
        raise ConfigurationError(
            f"--from-offsets names partitions {sorted(named[0])} but --to-offsets names {sorted(named[1])}"
        )
    if not named:
        return sorted(existing)
    unknown = sorted(named[0] - set(existing))
    if unknown:
        raise ConfigurationError(f"partition(s) {unknown} do not exist; the topic has {sorted(existing)}")
    return sorted(named[0])


def _bound(
    offsets: Mapping[int, int] | None, time_ms: int | None, partitions: Sequence[int], topic: TopicView
) -> dict[int, int]:
    """Per partition, the offset an end of the range names; absent means the log's end."""
    if offsets is not None:
        return {partition: offsets[partition] for partition in partitions}
    if time_ms is None:
        return {}
    found = topic.offsets_for_time(partitions, time_ms)
    return {partition: offset for partition, offset in found.items() if offset is not None}
