"""Where a worker's time went during the backlog: the sum of each stage's times
(``knnstream_stage_duration_seconds``, by stage and where it ran) read off the replicas' ``/metrics``."""

from __future__ import annotations

import urllib.request
from collections.abc import Mapping, Sequence

from prometheus_client.parser import text_string_to_metric_families

from stream.demo.local_worker import SCRAPE_TIMEOUT_S

STAGE_SUM = "knnstream_stage_duration_seconds_sum"
StageSeconds = dict[tuple[str, str], float]  # (where, stage) → seconds


def stage_seconds(ports: Sequence[int]) -> StageSeconds:
    """Seconds spent in each stage so far, summed over the replicas at ``ports``."""
    totals: StageSeconds = {}
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == STAGE_SUM:
                    key = (sample.labels["where"], sample.labels["stage"])
                    totals[key] = totals.get(key, 0.0) + sample.value
    return totals


def stage_seconds_between(before: Mapping[tuple[str, str], float], after: StageSeconds) -> tuple[str, ...]:
    """Each stage's seconds from ``before`` to ``after``, as ``where/stage=seconds``, in pipeline order."""
    order = ("decode", "dispatch", "predict", "encode", "produce", "acknowledge", "commit")
    keys = sorted(after, key=lambda key: (key[0], order.index(key[1]) if key[1] in order else len(order)))
    return tuple(
        f"{where}/{stage}={after[(where, stage)] - before.get((where, stage), 0.0):.3f}" for where, stage in keys
    )
