"""Promise 5: a Dask worker killed mid-batch is replaced by its nanny, the replacement loads the
model through the worker plugin, the batch is retried (or left uncommitted), and nothing is lost."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable

import pytest

from model_store import Manifest
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import MAX_IN_FLIGHT, Scale, report, wait_until
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import WorkerProcess, Workers

pytestmark = pytest.mark.kafka
KILLS = 2  # the Dask worker holding a batch, then the other original one


def _replacements(worker: WorkerProcess, originals: set[int]) -> int:
    """How many of the worker's Dask worker processes were started since ``originals``."""
    return len(set(worker.dask_worker_pids()) - originals)


def test_a_dask_worker_killed_mid_batch_is_replaced_and_nothing_is_lost(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
) -> None:
    names = topics(scale.partitions)
    positions = produce_records(kafka_bootstrap, names.input, scale.records)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            worker = workers.start("w", "--dask-workers=2")
            offsets.wait_for(math.ceil(0.25 * scale.records), [worker])
            # Both Dask workers stopped with a batch waiting on them: its prediction is in progress
            # on the one killed, whichever task it was given.
            victim, survivor = worker.hold_batch_in_predict()
            committed_at_kill = offsets.total()
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            os.kill(survivor, signal.SIGCONT)
            wait_until(lambda: _replacements(worker, {victim, survivor}) == 1, "the nanny's replacement")
            replaced_s = time.monotonic() - killed
            # Then the other original Dask worker goes too: from now on only replacements predict,
            # and a replacement without the model would fail every task it is given.
            os.kill(survivor, signal.SIGKILL)
            wait_until(lambda: _replacements(worker, {victim, survivor}) == 2, "two replacements")
            committed_by_originals = offsets.total()
            offsets.wait_for(scale.records, [worker], timeout_s=300)
            failures = worker.metric_lines("knnstream_batch_failures_total{")
            code, _ = worker.terminate(timeout_s=30)
            log = worker.log()
    finally:
        offsets.close()
    result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    report(
        record_property,
        "Dask worker SIGKILLed mid-batch",
        records=scale.records,
        committed_at_kill=committed_at_kill,
        replaced_after_s=replaced_s,
        committed_when_both_originals_gone=committed_by_originals,
        batch_failures=failures or "none",
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0, log[-3000:]
    assert result.lost == 0
    assert "holds no knnstream model" not in log, "a task reached a Dask worker without the model"
    assert not any("RuntimeError" in series for series in failures)
    assert committed_by_originals < scale.records, "replacement Dask workers predicted the rest of the stream"
    # The workers produce: a batch behind a failed one may already be published (on the other
    # worker), and both are processed again, so each of the two kills delivers at most the
    # batches in flight twice.
    bound = KILLS * MAX_IN_FLIGHT * scale.batch
    assert result.duplicated <= bound, "at most the batches in flight are delivered twice, per kill"
