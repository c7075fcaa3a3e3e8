"""Promise 6: a second instance joins the group mid-stream and later leaves it; partitions move both
ways, revoked partitions commit only what is done, and nothing is lost."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from model_store import Manifest
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import Scale, report, wait_until
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import WorkerProcess, Workers

pytestmark = pytest.mark.kafka


def _predicted(worker: WorkerProcess) -> float:
    return worker.metric("knnstream_records_predicted_total{")


def _assigned(log: str) -> list[int]:
    """The partitions of each assignment an instance received ("assigned ..." log lines), in order."""
    return [line.count("partition=") for line in log.splitlines() if '"assigned topic=' in line]


def test_an_instance_joining_and_leaving_moves_partitions_without_losses(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
) -> None:
    names = topics(scale.partitions)
    half, quarter = scale.records // 2, scale.records // 4
    positions = produce_records(kafka_bootstrap, names.input, half)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, scale.batch) as workers:
            first = workers.start("A")
            offsets.wait_for(quarter, [first])
            joined_at = offsets.total()
            second = workers.start("B")
            wait_until(lambda: sum(_assigned(second.log())) > 0, "B to be assigned partitions")
            # More records arrive on every partition: B predicts those of its partitions, and
            # the last ones arrive as B leaves, so that A has to take B's partitions back.
            positions |= produce_records(kafka_bootstrap, names.input, quarter, start=half)
            wait_until(lambda: _predicted(second) > 0, "B to predict records of the partitions it took over")
            positions |= produce_records(
                kafka_bootstrap, names.input, scale.records - half - quarter, start=half + quarter
            )
            left_at = offsets.total()
            predicted_by_b = int(_predicted(second))
            code, _ = second.terminate(timeout_s=30)
            offsets.wait_for(scale.records, [first], timeout_s=300)
            first.terminate(timeout_s=30)
            to_b, back_to_a = sum(_assigned(second.log())), sum(_assigned(first.log())[1:])
    finally:
        offsets.close()
    result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    report(
        record_property,
        "rebalance (join, then leave)",
        records=scale.records,
        committed_when_B_joined=joined_at,
        committed_when_B_left=left_at,
        predicted_by_B=predicted_by_b,
        partitions_moved_to_B=to_b,
        partitions_moved_back_to_A=back_to_a,
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0
    assert to_b >= 1 and back_to_a >= 1, "partitions moved to B and back"
    assert result.lost == 0
    # Revoked partitions are committed as they are revoked, and a commit refused while the group
    # rebalances is made again after it: a clean join and leave duplicates nothing.
    assert result.duplicated == 0
