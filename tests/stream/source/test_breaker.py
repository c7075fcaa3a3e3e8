"""The bad-record breaker: a run of bad records or a bad share of the window trips it; a count
of good records counts like as many good records fed one by one."""

from __future__ import annotations

import pytest

from stream.source.breaker import BadRecordBreaker, CircuitOpenError


def test_a_run_of_bad_records_trips_it() -> None:
    breaker = BadRecordBreaker(max_ratio=1.0, window=100, max_run=3)
    breaker.observe([True, True, False, True, True])
    with pytest.raises(CircuitOpenError, match="3 bad records in a row"):
        breaker.observe([True])


def test_good_records_by_count_end_a_run_and_dilute_the_window() -> None:
    by_count, one_by_one = (BadRecordBreaker(max_ratio=0.5, window=10, max_run=5) for _ in range(2))
    for breaker in (by_count, one_by_one):
        breaker.observe([True] * 4)
    by_count.observe_clean(6)
    one_by_one.observe([False] * 6)
    for breaker in (by_count, one_by_one):
        breaker.observe([True] * 4)  # the run starts again (4 < 5 in a row); 4 of the last 10 bad
    with pytest.raises(CircuitOpenError, match="60% of the last 10 records were bad"):
        by_count.observe([False, True, True])  # 6 of the last 10
    with pytest.raises(CircuitOpenError, match="60% of the last 10 records were bad"):
        one_by_one.observe([False, True, True])
