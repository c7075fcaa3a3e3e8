"""Promise 9: when output is slower than input, input waits: memory stays bounded, nothing is lost.

Output is made slow by a producer queue of 5 records (``--producer-queue-max-messages``): every
5 records the worker waits for the broker's acknowledgements. Input is a backlog of large
records, about twice the memory the worker may use for input. The test checks that the input did
outrun the output: when the last record was in the topic, more was waiting uncommitted than the
worker may hold.

The worker runs with ``MALLOC_ARENA_MAX=2``, as it should in a container: with glibc's default
of one allocation arena per thread and core, buffers freed by one thread stay mapped in its
arena, and the resident size creeps up with the volume of records read, not with what is held.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from model_store import Manifest
from tests.stream.guarantees.reading import GroupOffsets, prediction_ids, read_topic, tally
from tests.stream.guarantees.scenario import MAX_IN_FLIGHT, Scale, report
from tests.stream.guarantees.topics import Topics, produce_records
from tests.stream.guarantees.workers import Workers

pytestmark = pytest.mark.kafka

MIB = 1024 * 1024
BACKLOG_BYTES = 480_000_000  # the input records are padded to add up to this
CONSUMER_PREFETCH = 64 * MIB  # librdkafka queued.max.messages.kbytes (default): fetched, not yet polled
ALLOWANCE = 128 * MIB  # interpreter objects of the batches in hand, decoding buffers, allocator slack
GLIBC = {"MALLOC_ARENA_MAX": "2"}


def test_slow_output_pauses_input_and_memory_stays_bounded(
    kafka_bootstrap: str,
    topics: Callable[[int], Topics],
    group_id: str,
    tmp_store: str,
    model: Manifest,
    scale: Scale,
    record_property: Callable[[str, object], None],
) -> None:
    names = topics(scale.partitions)
    offsets = GroupOffsets(kafka_bootstrap, group_id, names.input, scale.partitions)
    batch = 500
    padding = BACKLOG_BYTES // scale.records
    try:
        with Workers(kafka_bootstrap, names, group_id, tmp_store, batch) as workers:
            slow_output = ("--producer-queue-max-messages=5", f"--max-record-bytes={2 * padding}")
            worker = workers.start("w", *slow_output, env=GLIBC)
            rss_idle = worker.rss_bytes()
            produced = time.monotonic()
            positions = produce_records(kafka_bootstrap, names.input, scale.records, padding=padding)
            input_s = time.monotonic() - produced
            waiting_when_produced = scale.records - offsets.total()
            offsets.wait_for(scale.records, [worker], timeout_s=300)
            output_s = time.monotonic() - produced
            peak = worker.peak_rss_bytes()
            code, _ = worker.terminate(timeout_s=30)
        result = tally(positions, prediction_ids(read_topic(kafka_bootstrap, names.output)))
    finally:
        offsets.close()
    backlog = scale.records * padding
    # fetched + the batches in flight (their records, the copy joined for the Dask worker to parse,
    # and what it parsed: its one worker runs in the serving process, whose memory this is) + the
    # one read ahead
    bound = CONSUMER_PREFETCH + (3 * MAX_IN_FLIGHT + 1) * batch * padding + ALLOWANCE
    report(
        record_property,
        "backpressure",
        records=scale.records,
        backlog_mib=backlog / MIB,
        input_records_per_s=round(scale.records / input_s),
        output_records_per_s=round(scale.records / output_s),
        rss_idle_mib=rss_idle / MIB,
        peak_rss_mib=peak / MIB,
        growth_mib=(peak - rss_idle) / MIB,
        bound_mib=bound / MIB,
        waiting_when_produced_mib=waiting_when_produced * padding / MIB,
        lost=result.lost,
        duplicated=result.duplicated,
    )
    assert code == 0
    assert waiting_when_produced * padding > bound, "the input outran the output by more than the worker may hold"
    assert bound < backlog, "the backlog must not fit in what the worker may hold"
    assert peak - rss_idle < bound, "memory grew beyond what the worker may hold"
    assert result.lost == 0
    assert result.duplicated == 0
