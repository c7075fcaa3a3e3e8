"""A circuit breaker on bad records: a broken upstream stops the worker instead of being
dead-lettered wholesale."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from itertools import repeat

from stream.errors import KnnStreamError

# What the trip message tells the user to do: the records that tripped it stay uncommitted.
GET_PAST_IT = (
    "fix the producer, then move the group past the bad records"
    " (kafka-consumer-groups --reset-offsets, or score them again with knnstream replay)"
)


class CircuitOpenError(KnnStreamError):
    """Too many bad records: the worker stops and commits nothing past the trip."""


class BadRecordBreaker:
    """Trips when the share of bad records in the last ``window`` records passes ``max_ratio``,
    or when ``max_run`` bad records arrive in a row."""

    def __init__(self, max_ratio: float, window: int, max_run: int) -> None:
        self._max_ratio = max_ratio
        self._recent: deque[bool] = deque(maxlen=window)
        self._max_run = max_run
        self._run = 0
        self._example = ""  # the latest bad record described, named when the breaker trips
        self._lock = threading.Lock()  # batches decoded on the driver and on the workers are fed from two threads

    def observe(self, bad_flags: Iterable[bool], example: str = "") -> None:
        """Feed one batch's records in order (True = bad); raises :class:`CircuitOpenError` on a
        trip, naming ``example`` (what was wrong with one of the batch's bad records, and where)."""
        with self._lock:
            if example:
                self._example = example
            self._observe(bad_flags)

    def observe_clean(self, count: int) -> None:
        """:meth:`observe` of ``count`` good records, without a loop per record."""
        with self._lock:
            if count:
                self._run = 0
            self._recent.extend(repeat(False, min(count, self._recent.maxlen or 0)))
            self._check_ratio()

    def _observe(self, bad_flags: Iterable[bool]) -> None:
        for bad in bad_flags:
            self._recent.append(bad)
            self._run = self._run + 1 if bad else 0
            if self._run >= self._max_run:
                raise CircuitOpenError(f"{self._run} bad records in a row (limit {self._max_run}){self._why()}")
        self._check_ratio()

    def _check_ratio(self) -> None:
        window = self._recent.maxlen or 0
        if len(self._recent) == window and window > 0:
            ratio = sum(self._recent) / window
            if ratio > self._max_ratio:
                raise CircuitOpenError(
                    f"{ratio:.0%} of the last {window} records were bad (limit {self._max_ratio:.0%}){self._why()}"
                )

    def _why(self) -> str:
        example = f": {self._example}" if self._example else ""
        return f"{example}; {GET_PAST_IT}"
