"""The pipeline with the Dask workers parsing, scoring and producing: clean parts there, unclean
ones on the driver, a delivery failed on a worker, the stages' timings."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from stream.batching.microbatch import MicroBatch
from stream.predict.distributed import Prediction
from stream.records.encode import Outbound, OutboundRecord
from stream.records.formats import joined
from stream.serve.metrics import WorkerMetrics
from stream.serve.pipeline import Pipeline, PipelineConfig
from stream.settings import InputFormat
from stream.source.breaker import BadRecordBreaker
from tests.fakes import FakeMessage
from tests.stream.serve.pipeline_doubles import RecordingCompleter, ScriptedModel, _batch, _recording, _wait


class KeepingCompleter(RecordingCompleter):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[OutboundRecord] = []

    def deliver(self, batch: MicroBatch, outbound: Outbound) -> None:
        super().deliver(batch, outbound)
        self.records += outbound.each()


def _float32_batch(first_offset: int, size: int = 3) -> MicroBatch:
    """Like :func:`_batch`, in the float32 format: the features as little-endian float32, the id in the key."""
    offsets = range(first_offset, first_offset + size)
    return MicroBatch(
        [FakeMessage(np.array([o, 1.0], "<f4").tobytes(), offset=o, key=f"r{o}".encode()) for o in offsets]
    )


@pytest.mark.parametrize(
    ("input_format", "make_batch", "bad_value"),
    [
        ("json", _batch, b'{"id": "bad", "features": [1.0]}'),
        ("float32", _float32_batch, np.array([1.0], "<f4").tobytes()),
    ],
)
def test_clean_batches_are_parsed_on_the_workers_and_unclean_ones_here(
    input_format: InputFormat, make_batch: Callable[[int], MicroBatch], bad_value: bytes
) -> None:
    """The worker-side parser takes clean batches whole; a batch with a bad record comes back
    and is decoded here: the bad record is dead-lettered, the others are predicted."""
    from stream.backend import to_host_numpy
    from stream.records.parse import parse_part

    model, completer = ScriptedModel(), KeepingCompleter()
    parsed_on_workers: list[int] = []

    def predict_lines(values: list[bytes], keys: list[bytes | None], n_features: int) -> Any:
        parsed = parse_part(input_format, joined(input_format, values), pa.array(keys, pa.binary()), n_features, "cpu")
        if parsed is None:
            return _Scored(None)
        parsed_on_workers.append(len(values))
        ids, matrix = parsed
        return _Scored((ids, model.predict(to_host_numpy(matrix))))

    config = PipelineConfig("features", "out", "dlq", 2, 10_000, retry_backoff_s=0.0, input_format=input_format)
    metrics = WorkerMetrics()
    pipeline = Pipeline(
        config, model.predict, completer, lambda batch: None, BadRecordBreaker(1.0, 100, 100), metrics,
        predict_lines=predict_lines,
    )  # fmt: skip
    clean, unclean = make_batch(0), make_batch(3)
    unclean.messages[1]._value = bad_value
    pipeline.submit(clean)
    pipeline.submit(unclean)
    pipeline.drain(_wait)
    pipeline.close()
    assert parsed_on_workers == [3]
    predictions = [json.loads(record.value) for record in completer.records if record.topic == "out"]
    dead_letters = [record for record in completer.records if record.topic == "dlq"]
    assert [doc["id"] for doc in predictions] == ["r0", "r1", "r2", "r3", "r5"]
    assert [doc["prediction"] for doc in predictions] == [0, 1, 2, 3, 5]
    assert [record.value for record in dead_letters] == [bad_value]
    assert dict(dead_letters[0].headers)["knnstream.error.reason"] == b"wrong_feature_count"
    # JSON's feature count is checked by the parser (the part comes back), float32's by the driver
    reason = "part_refused" if input_format == "json" else "batch_not_clean"
    assert _decoded_on_driver(metrics) == {reason: 3.0}


class _Scored:
    """Stands in for the parts the Dask workers parse and predict: their outcome, already there."""

    def __init__(self, outcome: tuple[pa.Array, Prediction] | None) -> None:
        self._outcome = outcome

    def elapsed_s(self) -> float:
        return 0.0

    def outcome(self) -> tuple[pa.Array, Prediction] | None:
        return self._outcome


class WorkersProduce:
    """Stands in for the Dask workers that score and produce: a batch is split in two parts; a
    part with an unclean record is handed back, the others count as produced."""

    def __init__(self, model: ScriptedModel, fail_at: int | None = None) -> None:
        self.model, self.fail_at = model, fail_at
        self.produced: list[str] = []
        self.keys_seen: list[bytes | None] = []

    def __call__(self, values: list[bytes], keys: list[bytes | None], n_features: int, topic: str) -> Any:
        from stream.records.parse import parse_lines

        self.keys_seen += keys
        bounds = [(0, len(values) // 2), (len(values) // 2, len(values))]
        parts = [parse_lines(b"\n".join(values[a:b]), b - a, n_features, "cpu") for a, b in bounds]
        return _Produced(self, bounds, parts)


class _Produced:
    def __init__(self, workers: WorkersProduce, bounds: list[tuple[int, int]], parts: list[Any]) -> None:
        self.workers, self.bounds, self.parts = workers, bounds, parts

    def outcome(self) -> list[Any]:
        from stream.backend import to_host_numpy
        from stream.predict.tasks import ScoredLines

        answers = []
        for part in self.parts:
            if part is None:
                answers.append(None)
                continue
            ids, matrix = part
            if self.workers.fail_at is not None and self.workers.fail_at in to_host_numpy(matrix)[:, 0]:
                raise RuntimeError("a delivery failed on a worker")
            self.workers.produced += ids.to_pylist()
            frame = self.workers.model.predict(to_host_numpy(matrix)).frame
            answers.append(ScoredLines(ids, frame, None, (("decode", 0.001), ("predict", 0.002))))
        return answers

    def prediction(self, produced: list[Any]) -> Prediction:
        return Prediction("v1", pd.concat([part.predicted for part in produced], ignore_index=True))

    def elapsed_s(self) -> float:
        return 0.0


def _producing_pipeline(
    workers: WorkersProduce, completer: RecordingCompleter, rewound: list[int], metrics: WorkerMetrics | None = None
) -> Pipeline:
    config = PipelineConfig("features", "out", "dlq", 2, 10_000, retry_backoff_s=0.0)
    return Pipeline(
        config, workers.model.predict, completer, _recording(rewound),
        BadRecordBreaker(1.0, 100, 100), metrics or WorkerMetrics(), produce_lines=workers,
    )  # fmt: skip


def _decoded_on_driver(metrics: WorkerMetrics) -> dict[str, float]:
    """The records decoded on the driver, by reason (reasons never counted left out)."""
    name = "knnstream_records_decoded_on_driver_total"
    samples = [sample for family in metrics.registry.collect() for sample in family.samples if sample.name == name]
    return {sample.labels["reason"]: sample.value for sample in samples}


def test_workers_produce_clean_parts_and_the_driver_the_rest_of_an_unclean_batch() -> None:
    workers, completer, metrics = WorkersProduce(ScriptedModel()), KeepingCompleter(), WorkerMetrics()
    pipeline = _producing_pipeline(workers, completer, [], metrics)
    clean, unclean = _batch(0, size=4), _batch(4, size=4)
    unclean.messages[3]._value = b'{"id": "bad", "features": [1.0]}'
    pipeline.submit(clean)
    pipeline.submit(unclean)
    pipeline.drain(_wait)
    pipeline.close()
    assert workers.produced == ["r0", "r1", "r2", "r3", "r4", "r5"]
    predictions = [json.loads(record.value) for record in completer.records if record.topic == "out"]
    dead_letters = [record.value for record in completer.records if record.topic == "dlq"]
    assert [doc["id"] for doc in predictions] == ["r6"]  # the good record of the part handed back
    assert dead_letters == [b'{"id": "bad", "features": [1.0]}']
    assert completer.committed == [0, 4]
    assert len(workers.keys_seen) == 8
    assert _decoded_on_driver(metrics) == {"part_refused": 2.0}  # the part of r6 and the bad record


def test_a_delivery_failed_on_a_worker_rewinds_the_batch_and_refuses_the_next() -> None:
    workers, completer, rewound = WorkersProduce(ScriptedModel(), fail_at=1), KeepingCompleter(), []
    pipeline = _producing_pipeline(workers, completer, rewound)
    pipeline.submit(_batch(0, size=4))
    pipeline.submit(_batch(4, size=4))
    pipeline.complete(_wait, block=True)
    pipeline.close()
    assert completer.committed == [] and completer.delivered == []
    assert rewound == [0, 4]


def test_raw_values_never_go_to_the_workers_without_their_keys() -> None:
    from stream.serve.stages import DecodedStage

    with pytest.raises(ValueError, match="with their keys"):
        DecodedStage(_batch(0), [b"{}"], None)


def _stage_counts(metrics: WorkerMetrics) -> dict[tuple[str, str], float]:
    name = "knnstream_stage_duration_seconds_count"
    samples = [sample for family in metrics.registry.collect() for sample in family.samples if sample.name == name]
    return {(sample.labels["stage"], sample.labels["where"]): sample.value for sample in samples}


def test_each_stage_is_timed_on_the_driver_and_the_workers_times_are_exported_beside() -> None:
    workers, completer, metrics = WorkersProduce(ScriptedModel()), KeepingCompleter(), WorkerMetrics()
    pipeline = _producing_pipeline(workers, completer, [], metrics)
    pipeline.submit(_batch(0, size=4))
    pipeline.submit(_batch(4, size=4))
    pipeline.drain(_wait)
    pipeline.close()
    counts = _stage_counts(metrics)
    assert {stage: counts[(stage, "driver")] for stage in ("decode", "dispatch", "commit")} == {
        "decode": 2.0, "dispatch": 2.0, "commit": 2.0,
    }  # fmt: skip
    assert counts[("decode", "worker")] == counts[("predict", "worker")] == 4.0  # two parts a batch
    assert ("encode", "driver") not in counts  # the workers encoded and produced every record
