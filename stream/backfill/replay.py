"""``knnstream replay``: re-score a bounded range of a topic with a chosen model version.

The records of the range are read without any consumer group's offsets being read or
written (see :mod:`stream.backfill.reader`), predicted through the streaming worker's Dask
path, and produced to the output topic in the worker's format. Bad records go to the
dead-letter topic when one is given, and are only counted otherwise. The job ends by
itself when every partition reached the end of its range.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

import numpy as np
from distributed import Client

from model_store import Manifest
from stream.backend import resolve_backend
from stream.backfill.common import install_model, job_client, metrics_endpoint, resolve_manifest
from stream.backfill.progress import BackfillMetrics, Progress, progress_line
from stream.backfill.ranges import PartitionRange, resolve_ranges
from stream.backfill.reader import RangeReader
from stream.backfill.settings import ReplaySettings
from stream.predict.distributed import DaskPredictor
from stream.records.decode import DecodedBatch
from stream.records.encode import Outbound, encode_dead_letters, encode_predictions
from stream.records.formats import decode_batch_as
from stream.settings import KafkaSettings, ServeSettings
from stream.sink.kafka import KafkaSink

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReplayReport:
    model: str
    version: str
    input_topic: str
    output_topic: str
    group_id: str
    ranges: list[PartitionRange]
    records: int
    predicted: int
    dead_letters: dict[str, int] = field(default_factory=dict)
    dlq_topic: str | None = None


def run_replay(
    settings: ReplaySettings,
    client: Client | None = None,
    metrics: BackfillMetrics | None = None,
    stream: TextIO | None = None,
) -> ReplayReport:
    """Re-score the range; uses ``client`` or a Dask cluster of its own."""
    spec = settings.range_spec()
    backend = resolve_backend(settings.backend)
    manifest = resolve_manifest(settings.store, settings.model)
    metrics = metrics or BackfillMetrics()
    progress = Progress("replay", metrics, progress_line("replay", settings.progress, stream), unit="offsets")
    reader, sink = RangeReader(settings), KafkaSink.for_settings(_sink_settings(settings))
    try:
        reader.check_topics([t for t in (settings.input_topic, settings.output_topic, settings.dlq_topic) if t])
        ranges = resolve_ranges(spec, reader)
        log.info("replaying %s: %s", settings.input_topic, ", ".join(_describe(r) for r in ranges))
        progress.start(manifest.name, manifest.version, sum(r.size for r in ranges))
        if progress.total:  # an empty range needs no cluster
            with (
                metrics_endpoint(metrics, settings.metrics_host, settings.metrics_port),
                job_client(settings, backend, client) as dask_client,
            ):
                scorer = _scorer(install_model(dask_client, backend, settings.store, manifest, settings.probabilities))
                _replay(settings, manifest, ranges, reader, scorer, sink.deliver, progress)
        progress.finish()
    finally:
        progress.close()
        reader.close()
        sink.close()
    return ReplayReport(
        model=manifest.name,
        version=manifest.version,
        input_topic=settings.input_topic,
        output_topic=settings.output_topic,
        group_id=reader.group_id,
        ranges=list(ranges),
        records=progress.records,
        predicted=progress.predicted,
        dead_letters=dict(progress.rejected),
        dlq_topic=settings.dlq_topic,
    )


Scorer = Callable[[np.ndarray], tuple[str, np.ndarray, np.ndarray, Any]]


def _replay(
    settings: ReplaySettings,
    manifest: Manifest,
    ranges: Sequence[PartitionRange],
    reader: RangeReader,
    score: Scorer,
    deliver: Callable[[Outbound], object],
    progress: Progress,
) -> None:
    """Read, decode, predict, produce (every record acknowledged), count; batch after batch."""
    offsets_counted = 0
    for messages in reader.read(ranges, settings.batch_max_records, settings.idle_timeout_s):
        decoded = decode_batch_as(settings.input_format, messages, manifest.n_features, settings.max_record_bytes)
        deliver(_records(settings, decoded, score))
        rejected: dict[str, int] = {}
        for dead in decoded.dead_letters:
            rejected[dead.reason] = rejected.get(dead.reason, 0) + 1
        offsets_now = reader.offsets_done()
        progress.advance(offsets_now - offsets_counted, len(messages), len(decoded.ids), rejected)
        offsets_counted = offsets_now
    progress.advance(reader.offsets_done() - offsets_counted, 0, 0)


def _records(settings: ReplaySettings, decoded: DecodedBatch, score: Scorer) -> Outbound:
    records = Outbound()
    if decoded.ids:
        version, predictions, distances, probabilities = score(decoded.features)
        records += encode_predictions(decoded, predictions, distances, version, settings.output_topic, probabilities)
    if settings.dlq_topic is not None:
        records += encode_dead_letters(decoded.dead_letters, settings.dlq_topic, settings.max_record_bytes)
    else:
        for dead in decoded.dead_letters:
            message = dead.message
            log.warning(
                "skipping topic=%s partition=%d offset=%d: %s",
                message.topic(),
                message.partition(),
                message.offset(),
                dead.error_message,
            )
    return records


def _scorer(predictor: DaskPredictor) -> Scorer:
    """Host feature rows → (version, predictions, distances, probabilities or ``None``), through
    the workers' plugin."""

    def score(features: np.ndarray) -> tuple[str, np.ndarray, np.ndarray, Any]:
        prediction = predictor.predict(features)
        frame: Any = prediction.frame
        probabilities = frame.get("probabilities")
        return prediction.version, frame["prediction"].to_numpy(), frame["distance"].to_numpy(), probabilities

    return score


def _sink_settings(settings: ReplaySettings) -> ServeSettings:
    """What :class:`KafkaSink` reads (connection, record size, delivery timeout), without the environment."""
    kafka = {name: getattr(settings, name) for name in KafkaSettings.model_fields}
    return ServeSettings.model_construct(
        **kafka,
        model=settings.model,
        max_record_bytes=settings.max_record_bytes,
        delivery_timeout_s=settings.delivery_timeout_s,
    )


def _describe(r: PartitionRange) -> str:
    return f"partition {r.partition} offsets [{r.start}, {r.end})"
