"""Promise 3: SIGTERM mid-stream finishes the batch in flight, commits it and exits 0 within 20 s;
a restart then finishes the stream with nothing lost and nothing duplicated. Ctrl-C in a terminal
(SIGINT to the worker's whole process group, its local Dask workers included) does the same,
with no traceback: the Dask workers ignore it and are stopped by the worker."""

from __future__ import annotations

import math
import os
import signal
import time
from collections.abc import Callable

import pytest

from model_store import Manifest
from stream.backend import Backend
from tests.stream.guarantees.reading import GroupOffsets, TopicWatcher, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import DASK_WORKER_PROCESSES, Scale, report
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import Workers

pytestmark = pytest.mark.kafka

STOP_WITHIN_S = 20.0


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [(signal.SIGTERM, False), (signal.SIGINT, True)],
    ids=["sigterm-to-the-worker", "ctrl-c-to-the-process-group"],
)
def test_a_stop_signal_finishes_the_batch_in_flight_commits_and_exits_cleanly(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
    signum: signal.Signals,
    to_group: bool,
    backend: Backend,
) -> None:
    names = topics(scale.partitions)
    positions = produce_records(kafka_bootstrap, names.input, scale.records)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    output = TopicWatcher(kafka_bootstrap, names.output, scale.partitions)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            # On GPUs (-m gpu): a LocalCUDACluster's workers, processes whatever the flag says.
            first = workers.start("first", "--backend", backend, DASK_WORKER_PROCESSES)
            offsets.wait_for(math.ceil(0.3 * scale.records), [first])
            held = first.hold_batch_in_predict()  # a batch is certainly in flight when SIGTERM arrives
            committed_at_signal = offsets.total()
            signalled = time.monotonic()
            if to_group:
                first.signal_group(signum)  # the held Dask workers get it too, when continued
            else:
                first.process.send_signal(signum)
            for pid in held:
                os.kill(pid, signal.SIGCONT)
            code = first.wait_exit(timeout_s=STOP_WITHIN_S + 10)
            exit_s = time.monotonic() - signalled
            committed_at_exit, delivered_at_exit = offsets.total(), output.drain()
            second = workers.start("second")
            offsets.wait_for(scale.records, [second], timeout_s=300)
            second.terminate(timeout_s=30)
            log = first.log()
    finally:
        offsets.close()
        output.close()
    result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    report(
        record_property,
        f"graceful stop ({signum.name}{' to the process group' if to_group else ''})",
        records=scale.records,
        exit_code=code,
        exit_s=exit_s,
        committed_at_signal=committed_at_signal,
        committed_at_exit=committed_at_exit,
        delivered_at_exit=delivered_at_exit,
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0, log[-3000:]
    assert exit_s <= STOP_WITHIN_S
    assert f"received {signum.name}: finishing the batch in flight" in log and "stopped cleanly" in log
    assert "Traceback" not in log and "KeyboardInterrupt" not in log, log[-3000:]
    assert committed_at_exit > committed_at_signal, "the batch in flight was completed and committed"
    assert delivered_at_exit == committed_at_exit, "everything delivered was committed before the exit"
    assert result.lost == 0
    assert result.duplicated == 0
