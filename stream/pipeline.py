"""The streamz pipeline of one micro-batch, and the commit order, written down once.

    decode → predict → encode → complete: produce → flush/ack → commit offsets

How a batch is completed (after acknowledgements, or in a transaction) is the batch completer's
business (:mod:`stream.sink.commit`). When prediction or delivery fails, nothing is committed:
the source rewinds to the batch's first offsets and the batch is processed again. A circuit
breaker on bad records stops the worker before anything of the tripping batch is committed, and
so does a transactional producer fenced by another instance of the same ``transactional.id``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from streamz import Stream

from stream.backend import to_host_numpy
from stream.batching.microbatch import MicroBatch
from stream.errors import KnnStreamError
from stream.metrics import WorkerMetrics
from stream.predict.distributed import Prediction
from stream.sink.commit import BatchCompleter, ProducerFencedError
from stream.sink.encode import OutboundRecord, encode_dead_letters, encode_predictions
from stream.source.breaker import BadRecordBreaker, CircuitOpenError
from stream.source.decode import DecodedBatch, decode_batch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PipelineConfig:
    input_topic: str
    output_topic: str
    dlq_topic: str
    n_features: int
    max_record_bytes: int
    max_consecutive_failures: int = 20
    retry_backoff_s: float = 0.5
    max_backoff_s: float = 5.0


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
        completer: BatchCompleter,
        rewind: Callable[[MicroBatch], None],
        breaker: BadRecordBreaker,
        metrics: WorkerMetrics,
        on_prediction: Callable[[Prediction], None] = lambda prediction: None,
    ) -> None:
        self._config = config
        self._predict_frame = predict_frame
        self._completer = completer
        self._rewind = rewind
        self._breaker = breaker
        self._metrics = metrics
        self._on_prediction = on_prediction
        self._failures_in_a_row = 0
        self._source = Stream()
        self._source.map(self._decode).map(self._predict).map(self._encode).sink(self._deliver)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch")
        self._delivered: EncodedStage | None = None

    def start(self) -> None:
        """Before the first batch (the consumer joins its group with it): ready the completer."""
        self._completer.start()

    def process(self, batch: MicroBatch, wait: Callable[[Future[None]], None]) -> bool:
        """Run one batch; True when it was committed, False when it was rewound for a retry.

        Decoding, prediction and delivery run on the batch thread while ``wait`` keeps the
        consumer polling; the offsets are then committed from the consumer's own thread.
        """
        self._metrics.in_flight.inc()
        try:
            in_flight = self._executor.submit(self._source.emit, batch)
            wait(in_flight)
            in_flight.result()
            self._completer.commit(batch)
        except (CircuitOpenError, ProducerFencedError):
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a batch: rewind, retry, give up later
            self._after_failure(batch, exc)
            return False
        finally:
            self._metrics.in_flight.dec()
        self._failures_in_a_row = 0
        if self._delivered is not None:
            self._count_delivered(self._delivered)
        self._metrics.batch_latency.observe(time.monotonic() - batch.opened_at)
        return True

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def _decode(self, batch: MicroBatch) -> DecodedStage:
        self._metrics.consumed.labels(self._config.input_topic).inc(len(batch))
        self._metrics.batch_size.observe(len(batch))
        decoded = decode_batch(batch.messages, self._config.n_features, self._config.max_record_bytes)
        bad = {id(letter.message) for letter in decoded.dead_letters}
        self._breaker.observe(id(message) in bad for message in batch.messages)
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
        prediction = self._predict_frame(stage.decoded.features)
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

    def _deliver(self, stage: EncodedStage) -> None:
        self._delivered = None
        self._completer.deliver(stage.batch, stage.records)
        self._delivered = stage

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
        time.sleep(min(self._config.max_backoff_s, self._config.retry_backoff_s * self._failures_in_a_row))
