"""The pipeline's order with several batches in flight: deliveries and commits follow the
consumption order, and a failed batch takes every later one back with it."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

from stream.batching.microbatch import MicroBatch
from stream.serve.metrics import WorkerMetrics
from stream.serve.pipeline import Pipeline, PipelineConfig
from stream.serve.stages import BatchJob, EncodedStage
from stream.source.breaker import BadRecordBreaker
from tests.stream.serve.pipeline_doubles import RecordingCompleter, ScriptedModel, _batch, _recording, _wait


def _pipeline(model: ScriptedModel, completer: RecordingCompleter, rewound: list[int], depth: int) -> Pipeline:
    config = PipelineConfig("features", "out", "dlq", 2, 10_000, retry_backoff_s=0.0, max_in_flight=depth)
    return Pipeline(
        config,
        model.predict,
        completer,
        _recording(rewound),
        BadRecordBreaker(1.0, 100, 100),
        WorkerMetrics(),
    )


def test_batches_are_delivered_and_committed_in_the_order_they_were_consumed() -> None:
    model, completer, rewound = ScriptedModel(hold_at=0), RecordingCompleter(), []
    pipeline = _pipeline(model, completer, rewound, depth=3)
    for offset in (0, 3, 6):
        pipeline.submit(_batch(offset))
    assert pipeline.full()
    assert pipeline.complete(_wait, block=False) == 0  # the first is held: nothing may be committed
    model.release.set()
    pipeline.drain(_wait)
    pipeline.close()
    assert completer.delivered == [0, 3, 6]
    assert completer.committed == [0, 3, 6]
    assert rewound == []


def test_delivered_batches_are_committed_in_order_up_to_the_first_not_delivered() -> None:
    """What the consumer's thread commits while the next batch fills: the oldest batches that are
    delivered, never one behind a batch still under way."""
    model, completer, rewound = ScriptedModel(hold_at=3), RecordingCompleter(), []
    pipeline = _pipeline(model, completer, rewound, depth=3)
    for offset in (0, 3, 6):
        pipeline.submit(_batch(offset))
    jobs = pipeline.in_flight()
    _wait(jobs[0][1])
    assert pipeline.commit_delivered() == 1
    assert completer.committed == [0]
    assert pipeline.commit_delivered() == 0  # 3 is held
    model.release.set()
    _wait(jobs[2][1])
    assert pipeline.commit_delivered() == 2
    pipeline.close()
    assert completer.committed == [0, 3, 6]


def test_a_failed_batch_is_left_to_complete_which_rewinds_it() -> None:
    model, completer, rewound = ScriptedModel(fail_at=0), RecordingCompleter(), []
    pipeline = _pipeline(model, completer, rewound, depth=2)
    pipeline.submit(_batch(0))
    _wait(pipeline.in_flight()[0][1])
    assert pipeline.commit_delivered() == 0
    assert rewound == [] and len(pipeline.in_flight()) == 1
    pipeline.complete(_wait, block=True)
    pipeline.close()
    assert rewound == [0] and completer.committed == []


class FailingCommits(RecordingCompleter):
    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures, self.attempts = failures, 0

    def commit(self, batch: MicroBatch) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise RuntimeError("the group is rebalancing")
        super().commit(batch)


def test_a_commit_that_fails_between_polls_is_left_to_the_consume_loop_and_not_tried_again_meanwhile() -> None:
    model, completer, rewound = ScriptedModel(), FailingCommits(failures=1), []
    pipeline = _pipeline(model, completer, rewound, depth=2)
    pipeline.submit(_batch(0))
    _wait(pipeline.in_flight()[0][1])
    assert pipeline.commit_delivered() == 0
    assert pipeline.commit_delivered() == 0  # the next slice of the wait does not try again
    assert completer.attempts == 1 and len(pipeline.in_flight()) == 1
    assert pipeline.complete(_wait, block=True) == 1  # the consume loop commits it
    pipeline.close()
    assert completer.committed == [0] and rewound == []


def test_a_batch_delivered_behind_one_under_way_waits_for_it() -> None:
    """Committing the later batch first would move the group past the earlier one's records."""
    completer = RecordingCompleter()
    pipeline = _pipeline(ScriptedModel(), completer, [], depth=3)
    earlier, later = BatchJob(_batch(0), Future()), BatchJob(_batch(3), Future())
    later.done.set_result(EncodedStage(later.batch, [], 3, []))
    pipeline._jobs.extend([earlier, later])  # the order of the jobs is what is tested
    assert pipeline.commit_delivered() == 0
    earlier.done.set_result(EncodedStage(earlier.batch, [], 3, []))
    assert pipeline.commit_delivered() == 2
    pipeline.close()
    assert completer.committed == [0, 3]


@pytest.mark.parametrize("fail_at", [None, 3])
def test_a_batch_leaves_the_in_flight_gauge_after_its_other_metrics(fail_at: int | None) -> None:
    """The bench reads a worker with no batch in flight as one whose batch metrics are all in."""
    model, completer, rewound = ScriptedModel(fail_at=fail_at), RecordingCompleter(), []
    pipeline = _pipeline(model, completer, rewound, depth=2)
    metrics = pipeline._metrics  # the gauge's order against the histograms is what is tested
    seen: list[tuple[float, float]] = []
    decrement = metrics.in_flight.dec

    def noting(amount: float = 1) -> None:
        latency = metrics.registry.get_sample_value("knnstream_batch_latency_seconds_count") or 0.0
        failures = metrics.registry.get_sample_value("knnstream_batch_failures_total", {"stage": "RuntimeError"})
        seen.append((latency, failures or 0.0))
        decrement(amount)

    metrics.in_flight.dec = noting  # type: ignore[method-assign]
    for offset in (0, 3):
        pipeline.submit(_batch(offset))
    pipeline.drain(_wait)
    pipeline.close()
    if fail_at is None:
        assert seen == [(1.0, 0.0), (2.0, 0.0)]
    else:
        assert seen == [(1.0, 0.0), (1.0, 1.0)]  # batch 0 committed, then the failure counted


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_a_failed_batch_rewinds_itself_and_every_later_one_undelivered(depth: int) -> None:
    model, completer, rewound = ScriptedModel(fail_at=3), RecordingCompleter(), []
    pipeline = _pipeline(model, completer, rewound, depth=depth)
    for offset in (0, 3, 6):
        if pipeline.full():
            pipeline.complete(_wait, block=True)
        pipeline.submit(_batch(offset))
    pipeline.drain(_wait)
    pipeline.close()
    assert completer.committed[0] == 0
    assert 3 not in completer.delivered and 3 not in completer.committed
    in_flight_with_the_failure = [o for o in (3, 6) if o not in completer.committed]
    assert rewound[: len(in_flight_with_the_failure)] == in_flight_with_the_failure
    assert all(later not in completer.delivered for later in rewound)
