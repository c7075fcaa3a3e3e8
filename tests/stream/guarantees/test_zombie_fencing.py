"""Promise 2's fencing: a stalled exactly-once instance (a zombie) that wakes up after its
successor took over has its transaction refused, or stops."""

from __future__ import annotations

import math
import signal
import time
from collections.abc import Callable

import pytest

from model_store import Manifest
from tests.stream.guarantees.reading import GroupOffsets, TopicWatcher, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import DASK_WORKER_PROCESSES, SLOW_OUTPUT, Scale, report, wait_until
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import WorkerProcess, Workers

pytestmark = pytest.mark.kafka


def _freeze_with_a_transaction_open(
    zombie: WorkerProcess, bootstrap: str, topics: Topics, partitions: int, offsets: GroupOffsets
) -> None:
    """SIGSTOP the worker's process group at a moment its transaction has predictions written and
    not committed: more records on the output topic than the group has committed (one prediction
    a record). Frozen between two transactions, it is continued and frozen again."""
    written = TopicWatcher(bootstrap, topics.output, partitions)
    try:
        for _ in range(50):
            zombie.signal_group(signal.SIGSTOP)
            if written.drain() > offsets.total():
                return
            zombie.signal_group(signal.SIGCONT)
            time.sleep(0.02)
    finally:
        written.close()
    raise AssertionError("the worker was never frozen with a transaction open")


@pytest.mark.parametrize("dask_workers", ["processes", "in-process"])
def test_exactly_once_zombie_is_fenced_by_the_group(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
    dask_workers: str,
) -> None:
    """A stalls mid-batch, is expired from the group, B takes its partitions; A wakes up and tries
    to finish its batch: the group coordinator refuses its offsets, so its transaction aborts.
    With Dask worker processes A's batch is held in its prediction (its Dask workers stopped
    first); with its Dask worker in its own process (the default), A stops while it produces."""
    names = topics(scale.partitions)
    positions = produce_records(kafka_bootstrap, names.input, scale.records)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    exactly_once = ("--guarantee=exactly-once", SLOW_OUTPUT)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            arrangement = (DASK_WORKER_PROCESSES,) if dask_workers == "processes" else ()
            zombie = workers.start("A", *exactly_once, f"--transactional-id=A-{group_id}", *arrangement)
            offsets.wait_for(math.ceil(0.1 * scale.records), [zombie])
            if dask_workers == "processes":
                zombie.hold_batch_in_predict()  # a batch in flight, stuck in its prediction
                zombie.signal_group(signal.SIGSTOP)  # and the whole worker stalls
            else:
                _freeze_with_a_transaction_open(zombie, kafka_bootstrap, names, scale.partitions, offsets)
            frozen_at = offsets.total()
            taken_over = time.monotonic()
            successor = workers.start("B", *exactly_once, f"--transactional-id=B-{group_id}")
            offsets.wait_for(frozen_at + 1, [successor])
            takeover_s = time.monotonic() - taken_over
            zombie.signal_group(signal.SIGCONT)
            wait_until(
                lambda: "aborting the transaction" in zombie.log(),
                "the zombie's transaction to be refused",
            )
            offsets.wait_for(scale.records, [zombie, successor], timeout_s=300)
            codes = [worker.terminate(timeout_s=30)[0] for worker in (zombie, successor)]
    finally:
        offsets.close()
    committed = prediction_ids(read_topic(kafka_bootstrap, names.output, isolation="read_committed"))
    written = read_topic(kafka_bootstrap, names.output)
    result = tally(positions, committed)
    refusal = next(line for line in zombie.log().splitlines() if "aborting the transaction" in line)
    report(
        record_property,
        f"exactly-once, zombie fenced (Dask workers: {dask_workers})",
        records=scale.records,
        committed_when_A_froze=frozen_at,
        B_first_commit_s=round(takeover_s, 1),
        lost=result.lost,
        duplicated=result.duplicated,
        aborted_records_hidden=len(written) - len(committed),
    )
    print(f"[guarantees] zombie A: {refusal}")
    assert codes == [0, 0]
    assert result.lost == 0
    assert result.duplicated == 0
    assert len(written) > len(committed), "the zombie's records were written, and must stay invisible"


def test_exactly_once_zombie_fenced_by_its_transactional_id_stops(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
) -> None:
    """B replaces a stalled A under the same transactional.id (as a StatefulSet's new pod): B's
    producer fences A's; A wakes up, finds itself fenced and stops, rather than fencing B back."""
    names = topics(scale.partitions)
    positions = produce_records(kafka_bootstrap, names.input, scale.records)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    same_instance = ("--guarantee=exactly-once", SLOW_OUTPUT, f"--transactional-id=pod-0-{group_id}")
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            zombie = workers.start("A", *same_instance, DASK_WORKER_PROCESSES)
            offsets.wait_for(math.ceil(0.1 * scale.records), [zombie])
            zombie.hold_batch_in_predict()
            zombie.signal_group(signal.SIGSTOP)
            frozen_at = offsets.total()
            successor = workers.start("B", *same_instance)
            offsets.wait_for(frozen_at + 1, [successor])
            zombie.signal_group(signal.SIGCONT)
            zombie_code = zombie.wait_exit(timeout_s=60)
            offsets.wait_for(scale.records, [successor], timeout_s=300)
            successor_code, _ = successor.terminate(timeout_s=30)
            last_line = zombie.log().strip().splitlines()[-1]
    finally:
        offsets.close()
    committed = prediction_ids(read_topic(kafka_bootstrap, names.output, isolation="read_committed"))
    written = read_topic(kafka_bootstrap, names.output)
    result = tally(positions, committed)
    report(
        record_property,
        "exactly-once, zombie with the same transactional.id",
        records=scale.records,
        committed_when_A_froze=frozen_at,
        A_exit_code=zombie_code,
        lost=result.lost,
        duplicated=result.duplicated,
        aborted_records_hidden=len(written) - len(committed),
    )
    print(f"[guarantees] zombie A: {last_line}")
    assert zombie_code == 1 and "another instance took over transactional.id" in last_line, last_line
    assert successor_code == 0
    assert result.lost == 0
    assert result.duplicated == 0
