"""Promise 7: a batch slower than max.poll.interval.ms does not make the consumer leave the group.

The batches are slow for an honest reason: a large index (500,000 rows) and big batches, sized
on this machine so that one prediction takes about two poll intervals: the machine's speed can
change by a third between the sizing and the batch, and the batch must still outlast one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import pytest
from threadpoolctl import threadpool_limits

from stream.predict.model import build_predictor, index_from_training_data
from tests.helpers import blobs
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import publish_model, report
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import Workers

pytestmark = pytest.mark.kafka

INDEX_ROWS = 500_000
MAX_POLL_INTERVAL_MS = 6_000  # the least librdkafka allows with the 6 s session timeout
BATCHES = 1
SLOWER = 2.0  # each batch's prediction takes about this many poll intervals (as measured here first)


def _rows_per_second(index_rows: int, probe_rows: int = 2_000) -> float:
    """How fast this machine predicts against an index of ``index_rows`` on one thread, as a Dask
    worker does (its nanny limits it to one BLAS thread per worker thread)."""
    features, labels = blobs(index_rows, seed=0)
    predictor = build_predictor(index_from_training_data("classification", 5, "euclidean", features, labels), "cpu")
    probe, _ = blobs(probe_rows, seed=1)
    with threadpool_limits(1):
        started = time.perf_counter()
        predictor.predict_host(probe)
        return probe_rows / (time.perf_counter() - started)


def test_a_batch_slower_than_the_poll_interval_keeps_the_consumer_in_its_group(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    record_property: Callable[[str, object], None],
) -> None:
    batch = math.ceil(SLOWER * MAX_POLL_INTERVAL_MS / 1000 * _rows_per_second(INDEX_ROWS))
    publish_model(tmp_store, rows=INDEX_ROWS)
    names = topics(1)
    positions = produce_records(kafka_bootstrap, names.input, BATCHES * batch)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, 1)
    slow = ("--max-poll-interval-ms", str(MAX_POLL_INTERVAL_MS), "--batch-max-wait-ms", "5000")
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, batch) as workers:
            worker = workers.start("w", *slow)
            offsets.wait_for(len(positions), [worker], timeout_s=240)
            predict_s = worker.metric("knnstream_predict_duration_seconds_sum")
            predicted_batches = worker.metric("knnstream_predict_duration_seconds_count")
            code, _ = worker.terminate(timeout_s=60)
            log = worker.log()
    finally:
        offsets.close()
    running = log.split("received SIGTERM")[0]
    assignments = [line for line in running.splitlines() if '"assigned topic=' in line]
    left = [line for line in running.splitlines() if "revoked" in line or "MAXPOLL" in line or "poll interval" in line]
    result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    mean_s = predict_s / max(predicted_batches, 1)
    report(
        record_property,
        "slow batches",
        index_rows=INDEX_ROWS,
        batch=batch,
        max_poll_interval_s=MAX_POLL_INTERVAL_MS / 1000,
        mean_predict_s=mean_s,
        batches=int(predicted_batches),
        group_changes=len(assignments) - 1 + len(left),
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0, log[-3000:]
    assert predicted_batches == BATCHES
    assert mean_s > MAX_POLL_INTERVAL_MS / 1000, "the batches were slower than max.poll.interval.ms"
    assert len(assignments) == 1 and not left, left[:3]
    assert result.lost == 0
    assert result.duplicated == 0
