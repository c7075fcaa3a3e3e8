"""The pipeline's order with several batches in flight: deliveries and commits follow the
consumption order, and a failed batch takes every later one back with it."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import numpy as np
import pandas as pd
import pytest

from stream.batching.microbatch import MicroBatch
from stream.metrics import WorkerMetrics
from stream.pipeline import Pipeline, PipelineConfig
from stream.predict.distributed import Prediction
from stream.sink.encode import OutboundRecord
from stream.source.breaker import BadRecordBreaker
from tests.fakes import FakeMessage


def _batch(first_offset: int, size: int = 3) -> MicroBatch:
    offsets = range(first_offset, first_offset + size)
    values = [json.dumps({"id": f"r{o}", "features": [float(o), 1.0]}).encode() for o in offsets]
    return MicroBatch([FakeMessage(v, offset=o) for o, v in zip(offsets, values, strict=True)])


class RecordingCompleter:
    """Stands in for the Kafka completer: records what was delivered and committed, in order."""

    def __init__(self) -> None:
        self.delivered: list[int] = []
        self.committed: list[int] = []

    def start(self) -> None:
        pass

    def deliver(self, batch: MicroBatch, records: Sequence[OutboundRecord]) -> None:
        self.delivered.append(batch.messages[0].offset())

    def commit(self, batch: MicroBatch) -> None:
        self.committed.append(batch.messages[0].offset())

    def close(self) -> None:
        pass


class ScriptedModel:
    """Predicts the first feature; the batch starting at ``fail_at`` fails, the one at
    ``hold_at`` waits for ``release``."""

    def __init__(self, fail_at: int | None = None, hold_at: int | None = None) -> None:
        self.fail_at, self.hold_at = fail_at, hold_at
        self.release = threading.Event()

    def predict(self, features: np.ndarray) -> Prediction:
        first = int(features[0, 0])
        if first == self.hold_at:
            assert self.release.wait(10)
        if first == self.fail_at:
            raise RuntimeError(f"predict failed at {first}")
        frame = pd.DataFrame({"prediction": features[:, 0].astype(int), "distance": np.zeros(len(features))})
        return Prediction("v1", frame)


def _pipeline(model: ScriptedModel, completer: RecordingCompleter, rewound: list[int], depth: int) -> Pipeline:
    config = PipelineConfig("features", "out", "dlq", 2, 10_000, retry_backoff_s=0.0, max_in_flight=depth)
    return Pipeline(
        config,
        model.predict,
        completer,
        lambda batch: rewound.append(batch.messages[0].offset()),
        BadRecordBreaker(1.0, 100, 100),
        WorkerMetrics(),
    )


def _wait(future: Future[None]) -> None:
    future.exception(timeout=10)


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


class KeepingCompleter(RecordingCompleter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[OutboundRecord] = []

    def deliver(self, batch: MicroBatch, records: Sequence[OutboundRecord]) -> None:
        super().deliver(batch, records)
        self.records += records


def test_clean_batches_are_parsed_on_the_workers_and_unclean_ones_here() -> None:
    """The worker-side parser takes clean batches whole; a batch with a bad record comes back
    and is decoded here: the bad record is dead-lettered, the others are predicted."""
    from stream.backend import to_host_numpy
    from stream.predict.lines import parse_lines

    model, completer = ScriptedModel(), KeepingCompleter()
    parsed_on_workers: list[int] = []

    def predict_lines(values: list[bytes], n_features: int) -> tuple[Any, Prediction] | None:
        parsed = parse_lines(b"\n".join(values), len(values), n_features, "cpu")
        if parsed is None:
            return None
        parsed_on_workers.append(len(values))
        ids, matrix = parsed
        return ids, model.predict(to_host_numpy(matrix))

    config = PipelineConfig("features", "out", "dlq", 2, 10_000, retry_backoff_s=0.0)
    pipeline = Pipeline(
        config, model.predict, completer, lambda batch: None, BadRecordBreaker(1.0, 100, 100), WorkerMetrics(),
        predict_lines=predict_lines,
    )  # fmt: skip
    clean, unclean = _batch(0), _batch(3)
    unclean.messages[1]._value = b'{"id": "bad", "features": [1.0]}'
    pipeline.submit(clean)
    pipeline.submit(unclean)
    pipeline.drain(_wait)
    pipeline.close()
    assert parsed_on_workers == [3]
    predictions = [json.loads(record.value) for record in completer.records if record.topic == "out"]
    dead_letters = [record.value for record in completer.records if record.topic == "dlq"]
    assert [doc["id"] for doc in predictions] == ["r0", "r1", "r2", "r3", "r5"]
    assert [doc["prediction"] for doc in predictions] == [0, 1, 2, 3, 5]
    assert dead_letters == [b'{"id": "bad", "features": [1.0]}']
