"""Parsing and resolving replay ranges, against a stand-in for the broker's offset lookups."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from stream.backfill.ranges import PartitionRange, RangeSpec, parse_offsets, parse_time, resolve_ranges
from stream.backfill.settings import ReplaySettings
from stream.cli.flags import build_settings
from stream.errors import ConfigurationError


@dataclass
class FakeTopic:
    """Partitions with watermarks and record times (offset → time, in offset order)."""

    times: dict[int, list[int]]
    low: dict[int, int] = field(default_factory=dict)

    def partitions(self) -> list[int]:
        return sorted(self.times)

    def watermarks(self, partition: int) -> tuple[int, int]:
        return self.low.get(partition, 0), len(self.times[partition])

    def offsets_for_time(self, partitions: Sequence[int], time_ms: int) -> dict[int, int | None]:
        found: dict[int, int | None] = {}
        for partition in partitions:
            later = [offset for offset, at in enumerate(self.times[partition]) if at >= time_ms]
            found[partition] = later[0] if later else None
        return found


def test_offset_lists_parse_and_bad_ones_say_why() -> None:
    assert parse_offsets("0:10, 2:0,1:7") == {0: 10, 2: 0, 1: 7}
    for text, expected in (
        ("0=10", "PARTITION:OFFSET"),
        ("a:1", "PARTITION:OFFSET"),
        ("0:-1", "PARTITION:OFFSET"),
        ("0:1,0:2", "partition 0 appears twice"),
        ("", "PARTITION:OFFSET"),
    ):
        with pytest.raises(ConfigurationError, match=expected):
            parse_offsets(text)


def test_iso_times_become_unix_milliseconds() -> None:
    assert parse_time("1970-01-01T00:00:01.5Z") == 1500
    assert parse_time("2026-01-31T12:00:00") == parse_time("2026-01-31T12:00:00+00:00") == 1_769_860_800_000
    assert parse_time("2026-01-31T14:00:00+02:00") == 1_769_860_800_000
    with pytest.raises(ConfigurationError, match="ISO 8601"):
        parse_time("yesterday")


def test_offset_ranges_are_clamped_to_what_the_log_holds() -> None:
    topic = FakeTopic({0: [0] * 50, 1: [0] * 20, 2: [0] * 5}, low={0: 10})
    spec = RangeSpec(from_offsets={0: 0, 1: 5}, to_offsets={0: 30, 1: 99})
    assert resolve_ranges(spec, topic) == [PartitionRange(0, 10, 30), PartitionRange(1, 5, 20)]


def test_times_resolve_per_partition_and_a_partition_without_records_in_range_is_empty() -> None:
    topic = FakeTopic({0: [100, 200, 300, 400, 500], 1: [10, 20], 2: []})
    ranges = resolve_ranges(RangeSpec(from_time_ms=200, to_time_ms=450), topic)
    assert ranges == [PartitionRange(0, 1, 4), PartitionRange(1, 2, 2), PartitionRange(2, 0, 0)]
    assert [r.size for r in ranges] == [3, 0, 0]
    # no end given: each partition's end of log; a from-offset list selects its partitions only
    assert resolve_ranges(RangeSpec(from_offsets={1: 1}), topic) == [PartitionRange(1, 1, 2)]
    # a start after the end is an empty range, not an error
    assert resolve_ranges(RangeSpec(from_offsets={0: 4}, to_offsets={0: 2}), topic) == [PartitionRange(0, 4, 4)]


def test_partition_lists_must_agree_and_exist() -> None:
    topic = FakeTopic({0: [0] * 5, 1: [0] * 5})
    with pytest.raises(ConfigurationError, match="--to-offsets names"):
        resolve_ranges(RangeSpec(from_offsets={0: 0, 1: 0}, to_offsets={0: 5}), topic)
    with pytest.raises(ConfigurationError, match=r"partition\(s\) \[7\] do not exist"):
        resolve_ranges(RangeSpec(from_offsets={7: 0}), topic)


def _settings(**flags: str) -> ReplaySettings:
    base = {"model": "m@production", "input_topic": "in", "output_topic": "out"}
    return build_settings(ReplaySettings, argparse.Namespace(**{**base, **flags}))


def test_replay_flags_are_checked_before_anything_starts() -> None:
    with pytest.raises(ConfigurationError, match=r"--from-offsets: .*PARTITION:OFFSET"):
        _settings(from_offsets="0-5")
    with pytest.raises(ConfigurationError, match=r"--to-time: .*ISO 8601"):
        _settings(from_offsets="0:5", to_time="soon")
    with pytest.raises(ConfigurationError, match="exactly one of --from-offsets and --from-time"):
        _settings().range_spec()
    with pytest.raises(ConfigurationError, match="exactly one of --from-offsets and --from-time"):
        _settings(from_offsets="0:1", from_time="2026-01-01T00:00:00Z").range_spec()
    with pytest.raises(ConfigurationError, match="at most one of --to-offsets and --to-time"):
        _settings(from_offsets="0:1", to_offsets="0:2", to_time="2026-01-01T00:00:00Z").range_spec()
    spec = _settings(from_time="1970-01-01T00:00:02Z", to_offsets="0:9").range_spec()
    assert spec == RangeSpec(from_time_ms=2000, to_offsets={0: 9})
