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


def test_a_trip_names_an_example_of_what_was_wrong_and_how_to_get_past_it() -> None:
    breaker = BadRecordBreaker(max_ratio=1.0, window=100, max_run=3)
    breaker.observe([True, True], example="wrong_feature_count (expected 13 features, got 16) at features[0]@1234")
    with pytest.raises(CircuitOpenError) as trip:
        breaker.observe([True])
    message = str(trip.value)
    assert message.startswith("3 bad records in a row (limit 3): wrong_feature_count (expected 13 features, got 16)")
    assert "at features[0]@1234" in message
    assert "kafka-consumer-groups --reset-offsets" in message and "knnstream replay" in message
