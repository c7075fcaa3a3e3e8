"""Promises 1 and 2: a worker SIGKILLed mid-stream and restarted loses nothing; with exactly-once
transactions it duplicates nothing either, and its restart aborts the transaction it died in."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from model_store import Manifest
from tests.stream.guarantees.reading import GroupOffsets, TopicWatcher, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import MAX_IN_FLIGHT, SLOW_OUTPUT, Scale, report
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import WorkerProcess, Workers

pytestmark = pytest.mark.kafka

KILLS = 3
STEP = 0.2  # each kill comes after at least this share of the records more was committed


@dataclass(frozen=True)
class Crashes:
    committed_at_kill: list[int]
    in_flight_at_kill: list[int]  # records delivered (or written in a transaction) but not committed
    restart_s: list[float]  # from each restart to the first new commit


def _crash_three_times(
    workers: Workers, offsets: GroupOffsets, output: TopicWatcher, records: int, *extra: str
) -> Crashes:
    """SIGKILL the worker's process group after every further 20% of output, then restart it.

    Output minus committed records only grows at a kill: by what was delivered but not committed
    (a restarted worker delivers it again and commits it).
    """
    worker = workers.start("w0", *extra)
    committed_at_kill: list[int] = []
    in_flight_at_kill: list[int] = []
    restart_s: list[float] = []
    seen, uncommitted = 0, 0
    for number in range(1, KILLS + 1):
        output.wait_for(seen + math.ceil(STEP * records), [worker])
        _freeze_in_open_batch(worker, output, offsets, uncommitted)
        worker.kill()
        seen, committed = output.drain(), offsets.total()
        assert committed < records, f"kill {number} came after the end of the stream"
        committed_at_kill.append(committed)
        in_flight_at_kill.append(seen - committed - uncommitted)
        uncommitted = seen - committed
        restarted = time.monotonic()
        worker = workers.start(f"w{number}", *extra)
        offsets.wait_for(committed + 1, [worker])
        restart_s.append(time.monotonic() - restarted)
    offsets.wait_for(records, [worker], timeout_s=300)
    worker.terminate(timeout_s=30)
    return Crashes(committed_at_kill, in_flight_at_kill, restart_s)


def _freeze_in_open_batch(
    worker: WorkerProcess, output: TopicWatcher, offsets: GroupOffsets, uncommitted: int, attempts: int = 20
) -> int:
    """Freeze the worker (SIGSTOP to its group) as new output appears, until output is found beyond
    the committed offsets: a batch delivered, or a transaction written, but not committed. The kill
    then lands at the worst moment. Returns the attempts it took (``attempts + 1``: not found)."""
    for attempt in range(1, attempts + 1):
        output.wait_for(len(output.messages) + 1, [worker])
        worker.signal_group(signal.SIGSTOP)
        if output.drain() - offsets.total() > uncommitted:
            return attempt
        worker.signal_group(signal.SIGCONT)
    return attempts + 1


def test_at_least_once_survives_three_sigkills(
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
    output = TopicWatcher(kafka_bootstrap, names.output, scale.partitions)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            crashes = _crash_three_times(workers, offsets, output, scale.records)
    finally:
        offsets.close()
        output.close()
    result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    # At most --max-batches-in-flight batches are delivered but not yet committed when the worker
    # dies; they are delivered again after the restart. A batch holds at most --batch-max-records.
    bound = KILLS * MAX_IN_FLIGHT * scale.batch
    report(
        record_property,
        "at-least-once, 3 x SIGKILL",
        records=scale.records,
        partitions=scale.partitions,
        batch=scale.batch,
        committed_at_kills=crashes.committed_at_kill,
        delivered_uncommitted_at_kills=crashes.in_flight_at_kill,
        lost=result.lost,
        duplicated=result.duplicated,
        duplicate_bound=bound,
        restart_to_first_commit_s=[round(s, 1) for s in crashes.restart_s],
    )
    assert result.lost == 0
    assert result.duplicated == sum(crashes.in_flight_at_kill), "duplicates are exactly the records in flight"
    assert all(n <= MAX_IN_FLIGHT * scale.batch for n in crashes.in_flight_at_kill), "at most the batches in flight"
    assert result.duplicated <= bound


def test_exactly_once_survives_three_sigkills_without_duplicates(
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
    # The same transactional.id across restarts (as a StatefulSet's pod name): the restarted
    # producer fences its predecessor and aborts its open transaction at once.
    instance = f"--transactional-id=knnstream-{uuid.uuid4().hex[:8]}-0"
    output = TopicWatcher(kafka_bootstrap, names.output, scale.partitions)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            crashes = _crash_three_times(
                workers, offsets, output, scale.records, "--guarantee=exactly-once", instance, SLOW_OUTPUT
            )
    finally:
        offsets.close()
        output.close()
    committed = prediction_ids(read_topic(kafka_bootstrap, names.output, isolation="read_committed"))
    written = read_topic(kafka_bootstrap, names.output)
    result = tally(positions, committed)
    report(
        record_property,
        "exactly-once, 3 x SIGKILL",
        records=scale.records,
        partitions=scale.partitions,
        batch=scale.batch,
        committed_at_kills=crashes.committed_at_kill,
        written_uncommitted_at_kills=crashes.in_flight_at_kill,
        lost=result.lost,
        duplicated=result.duplicated,
        aborted_records_hidden=len(written) - len(committed),
        restart_to_first_commit_s=[round(s, 1) for s in crashes.restart_s],
    )
    assert result.lost == 0
    assert result.duplicated == 0


CRASH_IN_A_TRANSACTION = """
import os, sys
from confluent_kafka import Consumer, Producer, TopicPartition
bootstrap, group, source, output, transactional_id, partitions = sys.argv[1:7]
consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "session.timeout.ms": 6000,
                     "isolation.level": "read_committed", "enable.auto.commit": False})
consumer.subscribe([source])
while not consumer.assignment():
    consumer.poll(0.1)
producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": transactional_id})
producer.init_transactions(30)
producer.begin_transaction()
producer.produce(output, key=b"ghost", value=b'{"id": "ghost"}')
offsets = [TopicPartition(source, p, 5) for p in range(int(partitions))]
producer.send_offsets_to_transaction(offsets, consumer.consumer_group_metadata(), 30)
producer.flush(30)
os._exit(0)  # a crash: the transaction stays open, with its offsets pending
"""


def test_exactly_once_restart_aborts_the_crashed_transaction_at_once(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    record_property: Callable[[str, object], None],
) -> None:
    """The predecessor died inside a transaction that already held the group's offsets. Until it
    is aborted, those offsets are unstable and a read_committed consumer of the group waits; the
    restarted worker initialises its producer first, which aborts it, instead of waiting for
    transaction.timeout.ms (60 s)."""
    names = topics(3)
    positions = produce_records(kafka_bootstrap, names.input, 3_000)
    transactional_id = f"pod-0-{group_id}"
    crash = [kafka_bootstrap, group_id, names.input, names.output, transactional_id, "3"]
    subprocess.run([sys.executable, "-c", CRASH_IN_A_TRANSACTION, *crash], check=True, timeout=60)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, 3)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, 300) as workers:
            started = time.monotonic()
            worker = workers.start("restarted", "--guarantee=exactly-once", f"--transactional-id={transactional_id}")
            offsets.wait_for(1, [worker])
            first_commit_s = time.monotonic() - started
            offsets.wait_for(len(positions), [worker])
            code, _ = worker.terminate(timeout_s=30)
    finally:
        offsets.close()
    committed = prediction_ids(read_topic(kafka_bootstrap, names.output, isolation="read_committed"))
    result = tally(positions, committed)
    report(
        record_property,
        "exactly-once, restart after a crash inside a transaction",
        records=len(positions),
        first_commit_after_s=first_commit_s,
        ghost_visible="ghost" in committed,
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0
    assert first_commit_s < 30, "the restarted worker waited for the crashed transaction to time out"
    assert "ghost" not in committed
    assert result.lost == 0
    assert result.duplicated == 0
