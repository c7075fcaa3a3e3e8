"""The streamz pipeline of one micro-batch, and the commit order, written down once.

    decode → predict → encode → produce → flush (every record acknowledged) → commit offsets

Offsets are committed only after the broker acknowledged every prediction and dead letter
of the batch (at-least-once). When prediction or delivery fails, nothing is committed: the
source rewinds to the batch's first offsets and the batch is processed again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamz import Stream

from stream.backend import to_host_numpy
from stream.batching.microbatch import MicroBatch
from stream.errors import KnnStreamError
from stream.metrics import WorkerMetrics
from stream.predict.distributed import Prediction
from stream.sink.encode import OutboundRecord, encode_dead_letters, encode_predictions
from stream.source.decode import DecodedBatch, decode_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    input_topic: str
    output_topic: str
    dlq_topic: str
    n_features: int
    max_record_bytes: int
    max_consecutive_failures: int = 5
    retry_backoff_s: float = 1.0


@dataclass(frozen=True)
class DecodedStage:
    batch: MicroBatch
    decoded: DecodedBatch


@dataclass(frozen=True)
class PredictedStage:
    batch: MicroBatch
    decoded: DecodedBatch
    predictions: Any  # host array
    distances: Any  # host array
    model_version: str


@dataclass(frozen=True)
class EncodedStage:
    batch: MicroBatch
    decoded: DecodedBatch
    records: list[OutboundRecord]


class BatchFailedError(KnnStreamError):
    """A batch failed more often in a row than the worker tolerates."""


class Pipeline:
    """Runs micro-batches through the streamz graph; the only place offsets are committed."""

    def __init__(
        self,
        config: PipelineConfig,
        predict_frame: Callable[[Any], Prediction],
        to_frame: Callable[[Any], Any],
        deliver: Callable[[list[OutboundRecord]], None],
        commit: Callable[[MicroBatch], None],
        rewind: Callable[[MicroBatch], None],
        metrics: WorkerMetrics,
        on_prediction: Callable[[Prediction], None] = lambda prediction: None,
    ) -> None:
        self._config = config
        self._predict_frame = predict_frame
        self._to_frame = to_frame
        self._deliver = deliver
        self._commit = commit
        self._rewind = rewind
        self._metrics = metrics
        self._on_prediction = on_prediction
        self._failures_in_a_row = 0
        self._source = Stream()
        self._source.map(self._decode).map(self._predict).map(self._encode).sink(self._deliver_then_commit)

    def process(self, batch: MicroBatch) -> bool:
        """Run one batch; True when it was committed, False when it was rewound for a retry."""
        self._metrics.in_flight.inc()
        try:
            self._source.emit(batch)
        except Exception as exc:  # noqa: BLE001 - any failure of a batch: rewind, retry, give up later
            self._after_failure(batch, exc)
            return False
        finally:
            self._metrics.in_flight.dec()
        self._failures_in_a_row = 0
        return True

    def _decode(self, batch: MicroBatch) -> DecodedStage:
        self._metrics.consumed.labels(self._config.input_topic).inc(len(batch))
        self._metrics.batch_size.observe(len(batch))
        decoded = decode_batch(batch.messages, self._config.n_features, self._config.max_record_bytes)
        for dead in decoded.dead_letters:
            message = dead.message
            log.warning(
                "dead-lettering topic=%s partition=%d offset=%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                dead.error_message,
            )
        return DecodedStage(batch, decoded)

    def _predict(self, stage: DecodedStage) -> PredictedStage:
        started = time.perf_counter()
        if len(stage.decoded.ids) == 0:
            empty = to_host_numpy([])
            return PredictedStage(stage.batch, stage.decoded, empty, empty, "")
        prediction = self._predict_frame(self._to_frame(stage.decoded.features))
        self._metrics.predict_time.observe(time.perf_counter() - started)
        self._on_prediction(prediction)
        return PredictedStage(
            stage.batch,
            stage.decoded,
            prediction.frame["prediction"].to_numpy(),
            prediction.frame["distance"].to_numpy(),
            prediction.version,
        )

    def _encode(self, stage: PredictedStage) -> EncodedStage:
        records = encode_predictions(
            stage.decoded, stage.predictions, stage.distances, stage.model_version, self._config.output_topic
        )
        records += encode_dead_letters(
            stage.decoded.dead_letters, self._config.dlq_topic, self._config.max_record_bytes
        )
        return EncodedStage(stage.batch, stage.decoded, records)

    def _deliver_then_commit(self, stage: EncodedStage) -> None:
        self._deliver(stage.records)  # produce + flush: returns only when all are acknowledged
        self._commit(stage.batch)  # only now are the offsets committed
        self._count_delivered(stage)
        self._metrics.batch_latency.observe(time.monotonic() - stage.batch.opened_at)

    def _count_delivered(self, stage: EncodedStage) -> None:
        self._metrics.predicted.labels(self._config.input_topic).inc(len(stage.decoded.ids))
        for dead in stage.decoded.dead_letters:
            self._metrics.dead_lettered.labels(self._config.input_topic, dead.reason).inc()

    def _after_failure(self, batch: MicroBatch, exc: BaseException) -> None:
        self._failures_in_a_row += 1
        self._metrics.batch_failures.labels(type(exc).__name__).inc()
        first = batch.first_offsets()
        log.error(
            "batch of %d records failed (%s: %s); rewinding to %s",
            len(batch),
            type(exc).__name__,
            exc,
            ", ".join(f"topic={p.topic} partition={p.partition} offset={p.offset}" for p in first),
        )
        self._rewind(batch)
        if self._failures_in_a_row >= self._config.max_consecutive_failures:
            raise BatchFailedError(
                f"{self._failures_in_a_row} batches failed in a row; last error: {type(exc).__name__}: {exc}"
            ) from exc
        time.sleep(self._config.retry_backoff_s * self._failures_in_a_row)
