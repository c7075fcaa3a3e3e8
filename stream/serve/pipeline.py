"""The streamz pipeline of micro-batches, and the commit order, written down once.

    prepare (decode → predict → encode) → deliver (finish → produce → flush/ack) → commit offsets

Up to ``max_in_flight`` batches are under way at once, so the GPU predicts one batch while the
previous one is produced: "predict" only sends a batch's parts to the Dask workers, and the
delivering thread waits for their answers ("finish", :mod:`stream.serve.batch`), so the
predictions of the batches in flight overlap. Preparing runs on one thread and delivering on
another, each taking batches in the order they were consumed, and offsets are committed from the consumer's thread,
batch after batch in that same order, each only once its batch is delivered. How a batch is
completed (after acknowledgements, or in a transaction) is the batch completer's business
(:mod:`stream.sink.commit`); what each stage does to a batch, :mod:`stream.serve.batch`'s.

With the Dask workers producing (``produce_lines``), "predict" sends a batch's clean parts to the
workers, which score and produce them and return once the broker acknowledged; "deliver" waits
for them, then delivers what the driver decoded itself (parts that were not clean). The commit
still comes after every acknowledgement.

When a batch fails, no later batch is delivered (the delivering thread refuses them in turn),
nothing of theirs is committed, and the source rewinds to the group's committed offsets so
every one of them is processed again. A circuit breaker on bad records stops the worker before
anything of the tripping batch is committed, and so does a transactional producer fenced by
another instance of the same ``transactional.id``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from streamz import Stream

from stream.batching.microbatch import MicroBatch
from stream.predict.distributed import Prediction
from stream.serve.batch import BatchStages
from stream.serve.metrics import WorkerMetrics
from stream.serve.stages import (
    BatchFailedError,
    BatchJob,
    BatchRefusedError,
    EncodedStage,
    PipelineConfig,
    PredictLines,
    ProduceLines,
    Wait,
)
from stream.sink.commit import BatchCompleter, ProducerFencedError
from stream.source.breaker import BadRecordBreaker, CircuitOpenError

log = logging.getLogger(__name__)


class Pipeline:
    """Runs micro-batches through the streamz graphs; the only place offsets are committed."""

    def __init__(
        self,
        config: PipelineConfig,
        predict_frame: Callable[[Any], Prediction],
        completer: BatchCompleter,
        rewind: Callable[[Sequence[MicroBatch]], None],
        breaker: BadRecordBreaker,
        metrics: WorkerMetrics,
        on_prediction: Callable[[Prediction], None] = lambda prediction: None,
        predict_lines: PredictLines | None = None,
        produce_lines: ProduceLines | None = None,
    ) -> None:
        self._config = config
        self._completer = completer
        self._rewind = rewind
        self._metrics = metrics
        self._failures_in_a_row = 0
        stages = BatchStages(config, predict_frame, breaker, metrics, on_prediction, predict_lines, produce_lines)
        self._prepare = Stream()
        self._prepare.map(stages.decode).map(stages.predict).map(stages.encode).sink(self._prepared)
        self._last_prepared: EncodedStage | None = None  # the prepare graph's output, on its thread
        self._deliver = Stream()
        self._deliver.map(stages.finish_produced).map(stages.finish_scored).sink(self._deliver_encoded)
        self._last_delivered: EncodedStage | None = None  # the deliver graph's output, on its thread
        self._preparing = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        self._delivering = ThreadPoolExecutor(max_workers=1, thread_name_prefix="deliver")
        self._jobs: deque[BatchJob] = deque()
        self._refusing = False  # set on the delivering thread when a batch failed; reset after the rewind
        self._commits_left_to_complete = False  # a commit between polls failed; complete() takes over

    def start(self) -> None:
        """Before the first batch (the consumer joins its group with it): ready the completer."""
        self._completer.start()

    def full(self) -> bool:
        return len(self._jobs) >= self._config.max_in_flight

    def in_flight(self) -> list[tuple[MicroBatch, Future[Any]]]:
        """The batches consumed and not yet committed, oldest first, with their delivery."""
        return [(job.batch, job.done) for job in self._jobs]

    def submit(self, batch: MicroBatch) -> None:
        """Start a batch: prepared after the batches before it, then delivered after them."""
        job = BatchJob(batch, self._preparing.submit(self._prepare_batch, batch))
        self._delivering.submit(self._deliver_prepared, job)
        self._jobs.append(job)
        self._metrics.in_flight.inc()

    def complete(self, wait: Wait, block: bool) -> int:
        """Commit the delivered batches, oldest first; how many were committed.

        ``block``: wait for the oldest batch (``wait`` keeps the consumer polling meanwhile)
        rather than only taking those already delivered. A failed batch rewinds it and every
        later one; :class:`CircuitOpenError` and :class:`ProducerFencedError` stop the worker.
        """
        committed = 0
        self._commits_left_to_complete = False
        while self._jobs:
            job = self._jobs[0]
            if not job.done.done():
                if not block:
                    break
                wait(job.done)
            block = False
            try:
                job.done.result()
                self._commit(job.batch)
            except (CircuitOpenError, ProducerFencedError):
                raise
            except Exception as exc:  # noqa: BLE001 - any failure of a batch: rewind, retry, give up later
                self._after_failure(job, exc, wait)
                return committed
            self._settle(self._jobs.popleft())
            committed += 1
        return committed

    def commit_delivered(self) -> int:
        """Commit the oldest batches that are delivered, up to the first one that is not (or that
        failed: :meth:`complete` deals with it); how many were committed. For the consumer's
        thread while it waits for the next batch to fill, so a delivered batch's offsets (and its
        latency) do not wait for that batch too. After a commit fails here, nothing more is
        committed here until :meth:`complete` has run (it commits that batch again, or handles the
        failure). A commit holds the batch being filled up for as long as it takes.
        """
        committed = 0
        while (
            not self._commits_left_to_complete
            and self._jobs
            and self._jobs[0].done.done()
            and self._jobs[0].done.exception() is None
        ):
            job = self._jobs[0]
            try:
                self._commit(job.batch)
            except Exception as exc:  # noqa: BLE001 - complete() commits it again, and handles a failure
                self._commits_left_to_complete = True  # not again every slice of the wait: once, there
                log.warning(
                    "commit of the delivered batch from %s left to the consume loop (%s: %s)",
                    _describe(job.batch.first_offsets()),
                    type(exc).__name__,
                    exc,
                )
                return committed
            self._settle(self._jobs.popleft())
            committed += 1
        return committed

    def _commit(self, batch: MicroBatch) -> None:
        started = time.perf_counter()
        self._completer.commit(batch)
        self._metrics.observe_stage("commit", time.perf_counter() - started)

    def drain(self, wait: Wait) -> None:
        """Commit every batch under way (a graceful stop)."""
        while self._jobs:
            self.complete(wait, block=True)

    def close(self) -> None:
        self._preparing.shutdown(wait=True)
        self._delivering.shutdown(wait=True)

    # ------------------------------------------------------------------ the preparing thread

    def _prepare_batch(self, batch: MicroBatch) -> EncodedStage:
        self._prepare.emit(batch)
        stage, self._last_prepared = self._last_prepared, None
        assert stage is not None
        return stage

    def _prepared(self, stage: EncodedStage) -> None:
        self._last_prepared = stage

    # ----------------------------------------------------------------- the delivering thread

    def _deliver_prepared(self, job: BatchJob) -> None:
        """Deliver ``job`` once prepared, unless an earlier batch failed; settles ``job.done``."""
        try:
            if self._refusing:
                raise BatchRefusedError("an earlier batch failed")
            self._deliver.emit(job.prepared.result())
            delivered, self._last_delivered = self._last_delivered, None
            assert delivered is not None
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer thread through the future
            self._refusing = True
            job.done.set_exception(exc)
        else:
            job.done.set_result(delivered)

    def _deliver_encoded(self, stage: EncodedStage) -> None:
        self._completer.deliver(stage.batch, stage.outbound)
        self._last_delivered = stage

    # ------------------------------------------------------------------- the consumer thread

    def _settle(self, job: BatchJob) -> None:
        self._failures_in_a_row = 0
        encoded = job.done.result()
        self._metrics.predicted.labels(self._config.input_topic).inc(encoded.scored)
        for dead in encoded.dead_letters:
            self._metrics.dead_lettered.labels(self._config.input_topic, dead.reason).inc()
        self._metrics.batch_latency.observe(time.monotonic() - job.batch.opened_at)
        self._metrics.in_flight.dec()  # last: no batch in flight means every one's metrics are in

    def _after_failure(self, failed: BatchJob, exc: BaseException, wait: Wait) -> None:
        """Let every later batch run out (none of them is delivered), rewind them all, back off."""
        for job in self._jobs:
            if not job.done.done():
                wait(job.done)
        jobs, self._jobs = list(self._jobs), deque()
        self._refusing = False
        self._failures_in_a_row += 1
        self._metrics.batch_failures.labels(type(exc).__name__).inc()
        self._metrics.in_flight.dec(len(jobs))  # last, as in _settle
        log.error(
            "batch of %d records failed (%s: %s); rewinding %d batch(es) from %s",
            len(failed.batch),
            type(exc).__name__,
            exc,
            len(jobs),
            _describe(failed.batch.first_offsets()),
        )
        self._rewind([job.batch for job in jobs])
        if self._failures_in_a_row >= self._config.max_consecutive_failures:
            raise BatchFailedError(
                f"{self._failures_in_a_row} batches failed in a row; last error: {type(exc).__name__}: {exc}"
            ) from exc
        time.sleep(min(self._config.max_backoff_s, self._config.retry_backoff_s * self._failures_in_a_row))


def _describe(positions: list[Any]) -> str:
    return ", ".join(f"topic={p.topic} partition={p.partition} offset={p.offset}" for p in positions)
