"""What happens to one micro-batch on its way, in the pipeline's stages
(:mod:`stream.serve.pipeline` runs them in order and commits):

    decode → predict → encode                   (the preparing thread)
    finish what the workers scored or produced  (the delivering thread, before the delivery)

A batch whose values all look clean goes to the Dask workers raw, to be parsed there; any other
is decoded here, record by record, and its bad records become dead letters. "predict" sends the
clean parts to the workers and returns at once, so that the predictions of the batches in flight
are under way together: with the driver producing (``predict_lines``), "finish" waits for the
batch's predictions and encodes them (a batch with a part the workers refused is decoded,
predicted and encoded here); with the workers producing (``produce_lines``), they score and
produce the parts and return once the broker acknowledged, and "finish" waits for them, then
decodes, predicts and encodes here the parts the workers refused.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from stream.backend import to_host_numpy
from stream.batching.microbatch import MicroBatch
from stream.predict.distributed import Prediction
from stream.records.decode import DeadLetter, DecodedBatch
from stream.records.encode import Outbound, encode_dead_letters, encode_scored
from stream.records.formats import decode_batch_as, looks_clean
from stream.serve.metrics import WorkerMetrics
from stream.serve.stages import (
    DecodedStage,
    EncodedStage,
    PipelineConfig,
    PredictedStage,
    PredictLines,
    ProduceLines,
)
from stream.source.breaker import BadRecordBreaker

log = logging.getLogger(__name__)


def describe_first(dead_letters: Sequence[DeadLetter]) -> str:
    """``wrong_feature_count (expected 13, got 16) at features[0]@1234``: the first dead letter's
    reason, message and place, for the circuit breaker's trip message."""
    if not dead_letters:
        return ""
    first = dead_letters[0]
    message = first.message
    return f"{first.reason} ({first.error_message}) at {message.topic()}[{message.partition()}]@{message.offset()}"


@dataclass(frozen=True)
class BatchStages:
    """The stages of a batch, as functions of their input; the bad-record breaker and the metrics
    see every batch go by."""

    config: PipelineConfig
    predict_frame: Callable[[Any], Prediction]
    breaker: BadRecordBreaker
    metrics: WorkerMetrics
    on_prediction: Callable[[Prediction], None]
    predict_lines: PredictLines | None
    produce_lines: ProduceLines | None

    def decode(self, batch: MicroBatch) -> DecodedStage:
        """Clean-looking values (and their keys) go to the workers to be parsed there; others are
        decoded here, record by record where needed."""
        started = time.perf_counter()
        decoded = self._decode(batch)
        self.metrics.observe_stage("decode", time.perf_counter() - started)
        return decoded

    def _decode(self, batch: MicroBatch) -> DecodedStage:
        self.metrics.consumed.labels(self.config.input_topic).inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        config = self.config
        if self.predict_lines is not None or self.produce_lines is not None:
            values = [message.value() for message in batch.messages]
            keys = [message.key() for message in batch.messages]
            if looks_clean(config.input_format, values, keys, config.max_record_bytes, config.n_features):
                return DecodedStage(batch, values, None, keys)
            self.metrics.decoded_on_driver.labels(config.input_topic, "batch_not_clean").inc(len(batch))
        return DecodedStage(batch, None, self._decode_here(batch.messages))

    def _decode_here(self, messages: Sequence[Any]) -> DecodedBatch:
        config = self.config
        decoded = decode_batch_as(config.input_format, messages, config.n_features, config.max_record_bytes)
        bad = {id(letter.message) for letter in decoded.dead_letters}
        self.breaker.observe((id(message) in bad for message in messages), describe_first(decoded.dead_letters))
        for dead in decoded.dead_letters:
            message = dead.message
            log.warning(
                "dead-lettering topic=%s partition=%d offset=%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                dead.error_message,
            )
        return decoded

    def predict(self, stage: DecodedStage) -> PredictedStage:
        started = time.perf_counter()
        batch = stage.batch
        keys = stage.keys or []  # set whenever there are raw values (DecodedStage checks)
        if stage.values is not None and self.produce_lines is not None:
            produced = self.produce_lines(stage.values, keys, self.config.n_features, self.config.output_topic)
            self.metrics.observe_stage("dispatch", time.perf_counter() - started)
            empty = to_host_numpy([])
            return PredictedStage(batch, [], pa.array([], pa.string()), empty, empty, "", [], produced)
        if stage.values is not None and self.predict_lines is not None:
            scoring = self.predict_lines(stage.values, keys, self.config.n_features)
            self.metrics.observe_stage("dispatch", time.perf_counter() - started)
            empty = to_host_numpy([])
            return PredictedStage(
                batch, [], pa.array([], pa.string()), empty, empty, "", [], keys=keys, scoring=scoring
            )
        decoded = stage.decoded if stage.decoded is not None else self._decode_here(batch.messages)
        if len(decoded.ids) == 0:
            empty = to_host_numpy([])
            return PredictedStage(batch, [], pa.array([], pa.string()), empty, empty, "", decoded.dead_letters)
        prediction = self.predict_frame(decoded.features)
        ids = pa.array(decoded.ids, pa.string())
        return self._predicted(batch, decoded.messages, ids, prediction, decoded.dead_letters, started)

    def _predicted(
        self,
        batch: MicroBatch,
        scored: Sequence[Any],
        ids: pa.Array,
        prediction: Prediction,
        dead_letters: Sequence[DeadLetter],
        started: float,
        keys: Sequence[bytes | None] | None = None,
    ) -> PredictedStage:
        elapsed = time.perf_counter() - started
        self.metrics.predict_time.observe(elapsed)
        self.metrics.observe_stage("predict", elapsed)
        self.metrics.observe_worker_stages(prediction.worker_seconds)
        self.on_prediction(prediction)
        frame = prediction.frame
        predictions, distances = frame["prediction"].to_numpy(), frame["distance"].to_numpy()
        probabilities = frame.get("probabilities")
        return PredictedStage(
            batch, scored, ids, predictions, distances, prediction.version, dead_letters, None, probabilities, keys
        )

    def encode(self, stage: PredictedStage) -> EncodedStage:
        if stage.produced is not None:
            return EncodedStage(stage.batch, Outbound(), 0, [], stage.produced)
        if stage.scoring is not None:  # encoded by finish_scored, once the prediction is back
            return EncodedStage(stage.batch, Outbound(), 0, [], awaiting=stage)
        started = time.perf_counter()
        outbound = encode_scored(
            stage.scored,
            stage.ids,
            stage.predictions,
            stage.distances,
            stage.model_version,
            self.config.output_topic,
            stage.probabilities,
            stage.keys,
        )
        outbound += encode_dead_letters(stage.dead_letters, self.config.dlq_topic, self.config.max_record_bytes)
        self.metrics.observe_stage("encode", time.perf_counter() - started)
        return EncodedStage(stage.batch, outbound, len(stage.scored), stage.dead_letters)

    def finish_produced(self, stage: EncodedStage) -> EncodedStage:
        """Wait for the parts the workers scored and produced; decode, predict and encode here
        the parts that were not clean (their bad records go to the dead-letter topic)."""
        produced = stage.produced
        if produced is None:
            return stage
        outcome = produced.outcome()
        self.metrics.predict_time.observe(produced.elapsed_s())
        scored_there = [part for part in outcome if part is not None]
        for part in scored_there:
            self.metrics.observe_worker_stages(part.seconds)
        if scored_there:
            self.on_prediction(produced.prediction(scored_there))
        messages = stage.batch.messages
        left = [
            message
            for (start, stop), part in zip(produced.bounds, outcome, strict=True)
            if part is None
            for message in messages[start:stop]
        ]
        self.breaker.observe_clean(len(messages) - len(left))
        if not left:
            return EncodedStage(stage.batch, Outbound(), len(messages), [])
        self.metrics.decoded_on_driver.labels(self.config.input_topic, "part_refused").inc(len(left))
        here = self.encode(self.predict(DecodedStage(stage.batch, None, self._decode_here(left))))
        return EncodedStage(stage.batch, here.outbound, here.scored + len(messages) - len(left), here.dead_letters)

    def finish_scored(self, stage: EncodedStage) -> EncodedStage:
        """Wait for the prediction of a batch the workers parse and predict, and encode it; a
        batch with a record that is not clean is decoded, predicted and encoded here (its bad
        records go to the dead-letter topic)."""
        awaiting = stage.awaiting
        if awaiting is None or awaiting.scoring is None:
            return stage
        batch = stage.batch
        started = time.perf_counter() - awaiting.scoring.elapsed_s()  # when its parts were sent
        scored = awaiting.scoring.outcome()
        if scored is not None:
            self.breaker.observe_clean(len(batch))
            ids, prediction = scored
            return self.encode(self._predicted(batch, batch.messages, ids, prediction, [], started, awaiting.keys))
        self.metrics.decoded_on_driver.labels(self.config.input_topic, "part_refused").inc(len(batch))
        return self.encode(self.predict(DecodedStage(batch, None, self._decode_here(batch.messages))))
