"""``knnstream score``: predictions for every row of Parquet or CSV files, written as Parquet.

The workers read their input partitions themselves, predict them with the model the
streaming worker's plugin loaded on them, and write one output part per input partition;
nothing but per-partition counts comes back to the client, so inputs larger than the
cluster's memory stream through it partition by partition.
"""

from __future__ import annotations

import logging
import queue
import uuid
from dataclasses import dataclass, field
from typing import Any, TextIO

from distributed import Client

from stream.backend import resolve_backend
from stream.backfill.common import install_model, job_client, metrics_endpoint, resolve_manifest
from stream.backfill.errors import BackfillError
from stream.backfill.inputs import check_output, read_input
from stream.backfill.partition import PartitionJob, output_meta, score_partition
from stream.backfill.progress import BackfillMetrics, Progress, progress_line
from stream.backfill.settings import ScoreSettings

log = logging.getLogger(__name__)
_POLL_S = 0.2


@dataclass(frozen=True)
class ScoreReport:
    model: str
    version: str
    data: str
    output: str
    parts: int
    records: int
    predicted: int
    rejected: dict[str, int] = field(default_factory=dict)


def run_score(
    settings: ScoreSettings,
    client: Client | None = None,
    metrics: BackfillMetrics | None = None,
    stream: TextIO | None = None,
) -> ScoreReport:
    """Score ``settings.data`` into ``settings.output``; uses ``client`` or a cluster of its own."""
    backend = resolve_backend(settings.backend)
    manifest = resolve_manifest(settings.store, settings.model)
    check_output(settings.output, settings.overwrite)
    table = read_input(settings.data, backend, settings.id_column, manifest.feature_names)
    metrics = metrics or BackfillMetrics()
    progress = Progress("score", metrics, progress_line("score", settings.progress, stream), unit="parts")
    meta = output_meta(backend, manifest, settings.probabilities)
    job = PartitionJob(
        backend=backend,
        version=manifest.version,
        id_column=settings.id_column,
        features=tuple(manifest.feature_names),
        dtypes=dict(meta.dtypes.items()),
        event_topic=f"knnstream-score-{uuid.uuid4().hex}",
    )
    with (
        metrics_endpoint(metrics, settings.metrics_host, settings.metrics_port),
        job_client(settings, backend, client) as dask_client,
    ):
        install_model(dask_client, backend, settings.store, manifest, settings.probabilities)
        write = _write_graph(table, job, meta, settings)
        log.info("scoring %d partitions of %s with %s:%s", table.npartitions, settings.data, manifest.name, job.version)
        try:
            progress.start(manifest.name, manifest.version, table.npartitions)
            _run(dask_client, write, job.event_topic, progress)
            progress.finish()
        finally:
            progress.close()
    return ScoreReport(
        model=manifest.name,
        version=manifest.version,
        data=settings.data,
        output=settings.output,
        parts=table.npartitions,
        records=progress.records,
        predicted=progress.predicted,
        rejected=dict(progress.rejected),
    )


def _write_graph(table: Any, job: PartitionJob, meta: Any, settings: ScoreSettings) -> Any:
    """The lazy write: read, predict and write each partition in one pass, one part per partition."""
    scored = table.map_partitions(score_partition, job, meta=meta)
    return scored.to_parquet(
        settings.output, compute=False, write_index=False, write_metadata_file=False, overwrite=settings.overwrite
    )


def _run(client: Client, write: Any, event_topic: str, progress: Progress) -> None:
    """Compute the write, turning the tasks' events into progress as they arrive."""
    events: queue.SimpleQueue[Any] = queue.SimpleQueue()
    tally = _PartitionTally(progress)
    client.subscribe_topic(event_topic, events.put)
    future = None
    try:
        future = client.compute(write)
        while not future.done():
            try:
                tally.add(events.get(timeout=_POLL_S))
            except queue.Empty:
                continue
        future.result()
    except (OSError, ValueError) as exc:
        raise BackfillError(f"scoring failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if future is not None and not future.done():
            future.cancel()
        client.unsubscribe_topic(event_topic)
    while not events.empty():  # the events of the last tasks arrive before their results
        tally.add(events.get())


class _PartitionTally:
    """Counts each partition once, also when a lost worker made Dask compute it again."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._seen: set[int] = set()

    def add(self, event: tuple[float, dict[str, Any]]) -> None:
        message = event[1]
        number = int(message["partition"])
        if number >= 0 and number in self._seen:
            return
        self._seen.add(number)
        self._progress.advance(
            done=1,
            records=int(message["records"]),
            predicted=int(message["predicted"]),
            rejected={str(reason): int(count) for reason, count in message["rejected"].items()},
        )
