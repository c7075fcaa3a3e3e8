"""How the benchmark's backlog went over time: every half second, the records each replica had
predicted (its ``knnstream_records_predicted_total``) and the predictions the benchmark had read.

A backlog's rate is one number; its course says more. Two replicas that each predict at half
speed throughout point at something they share; one that finishes early while the other lags,
at their share of the partitions; a rate that falls partway, at something that fills up.
Sampling never fails the benchmark: a replica that does not answer ends the sampling.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from stream.bench.sampling import SamplingThread

log = logging.getLogger(__name__)
SAMPLE_EVERY_S = 0.5

# A sample: seconds since the start, predictions read, then each replica's predicted records.
Sample = tuple[float, ...]


class ProgressSampler:
    """Calls ``read_predicted`` (each replica's total) and ``read_received`` every ``every_s``
    seconds in a thread between :meth:`start` and :meth:`stop`; counts are from :meth:`start` on.
    ``join_timeout_s``: how long :meth:`stop` waits for a sample under way (a scrape of each
    replica may take up to its own timeout)."""

    def __init__(
        self,
        read_predicted: Callable[[], Sequence[float]],
        read_received: Callable[[], int],
        every_s: float = SAMPLE_EVERY_S,
        join_timeout_s: float = 10.0,
    ) -> None:
        self._read_predicted, self._read_received, self._every_s = read_predicted, read_received, every_s
        self._samples: list[Sample] = []
        self._sampling = SamplingThread("progress sampler", self._run, join_timeout_s)
        self._started = 0.0
        self._baseline: Sample = ()

    def start(self) -> None:
        try:
            self._baseline = self._read()
        except Exception as exc:  # noqa: BLE001 - the course is decoration; the rate stands without it
            log.warning("the backlog's progress is not sampled: %s: %s", type(exc).__name__, exc)
            return
        self._started = time.monotonic()
        self._sampling.start()

    def stop(self) -> tuple[Sample, ...]:
        """Stop sampling, after a last sample; the samples (none when nothing was sampled)."""
        return tuple(self._samples) if self._sampling.stop() else ()

    def _run(self, stopping: threading.Event) -> None:
        try:
            while not stopping.wait(self._every_s):
                self._take()
            self._take()
        except Exception as exc:  # noqa: BLE001 - a replica gone or slow: the samples so far stand
            log.warning("the backlog's progress sampling stopped: %s: %s", type(exc).__name__, exc)

    def _take(self) -> None:
        seconds = round(time.monotonic() - self._started, 2)
        counts = self._read()
        self._samples.append((seconds, *(now - then for now, then in zip(counts, self._baseline, strict=True))))

    def _read(self) -> Sample:
        # Read first: a replica counts its records predicted when their batch commits, after the
        # broker acknowledged their predictions, so those read may run ahead of those counted.
        received = self._read_received()
        return (float(received), *(float(count) for count in self._read_predicted()))


def describe_progress(samples: Sequence[Sample]) -> str:
    """Rates between samples, e.g. ``0-1.0 s: read 180k/s, predicted 95k + 92k/s``."""
    parts, before = [], (0.0,) * (len(samples[0]) if samples else 0)
    for sample in samples:
        span = sample[0] - before[0]
        if span <= 0:
            continue
        rates = [(now - then) / span for now, then in zip(sample[1:], before[1:], strict=True)]
        predicted = " + ".join(_thousands(rate) for rate in rates[1:])
        parts.append(f"{before[0]:.1f}-{sample[0]:.1f} s: read {_thousands(rates[0])}/s, predicted {predicted}/s")
        before = sample
    return "; ".join(parts) or "not sampled"


def describe_moved(samples: Sequence[tuple[float, int]]) -> str:
    """Rates between samples of records moved, e.g. ``0-0.5 s: 180k/s; 0.5-1.0 s: 95k/s``."""
    parts, before = [], (0.0, 0)
    for seconds, moved in samples:
        if seconds > before[0]:
            rate = (moved - before[1]) / (seconds - before[0])
            parts.append(f"{before[0]:.1f}-{seconds:.1f} s: {_thousands(rate)}/s")
            before = (seconds, moved)
    return "; ".join(parts) or "not sampled"


def _thousands(rate: float) -> str:
    return f"{rate / 1000:.0f}k"
