"""Batch prediction spread over the Dask workers that hold the model."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from distributed import Client, WorkerPlugin

from stream.backend import Backend
from stream.errors import KnnStreamError
from stream.predict.dispatch import PartCall, PartScorerPlugin, PartSender, WorkerUnreachableError
from stream.predict.plugin import ModelPlugin, plugin_name, predict_on_worker, warm_up_of
from stream.predict.shared import SharedPlugins, fingerprint
from stream.predict.tasks import ScoredLines, score_lines_on_worker
from stream.records.formats import joined
from stream.settings import InputFormat

log = logging.getLogger(__name__)
WORKER_COUNT_TTL_S = 5.0
TASKS_PER_WORKER = 2  # one part predicted while the one before it is produced


class ModelLoadError(KnnStreamError):
    """A model version could not be loaded or verified on every Dask worker."""


@dataclass(frozen=True)
class Prediction:
    """One batch's predictions, all made by ``version``; ``shadow`` by the shadow version."""

    version: str
    frame: Any
    shadow: np.ndarray | None = None
    shadow_version: str | None = None
    worker_seconds: tuple[tuple[str, float], ...] = ()  # each part's stage times on its worker


class ProducedParts:
    """A batch's parts being scored and produced on the workers (:meth:`DaskPredictor.produce_lines`)."""

    def __init__(self, bounds: list[tuple[int, int]], calls: list[PartCall], version: str, shadow: str | None) -> None:
        self.bounds = bounds  # each part's [start, stop) rows of the batch
        self._calls = calls
        self._version, self._shadow_version = version, shadow
        self._started = time.perf_counter()

    def elapsed_s(self) -> float:
        """Seconds since the parts were sent."""
        return time.perf_counter() - self._started

    def outcome(self) -> list[ScoredLines | None]:
        """Waits for every part: its predictions once produced, or ``None`` when it was not clean
        (nothing of it produced). Raises what a part raised (a delivery that failed)."""
        return [call.result() for call in self._calls]

    def prediction(self, produced: list[ScoredLines]) -> Prediction:
        """The predictions of the parts produced, in their order."""
        answers = [(part.predicted, part.shadow) for part in produced]
        return _combine(answers, self._version, self._shadow_version, _seconds_of(produced))


class ScoredParts:
    """A batch's parts being parsed and predicted on the workers (:meth:`DaskPredictor.score_lines`)."""

    def __init__(self, calls: list[PartCall], version: str, shadow: str | None) -> None:
        self._calls = calls
        self._version, self._shadow_version = version, shadow
        self._started = time.perf_counter()

    def elapsed_s(self) -> float:
        """Seconds since the parts were sent."""
        return time.perf_counter() - self._started

    def outcome(self) -> tuple[pa.Array, Prediction] | None:
        """Waits for every part: the ids and predictions of the batch, in its order; ``None`` when
        any record is not clean. Raises what a part raised."""
        answers: list[ScoredLines | None] = [call.result() for call in self._calls]
        scored = [answer for answer in answers if answer is not None]
        if len(scored) < len(answers):
            return None
        ids = pa.concat_arrays([part.ids for part in scored])
        parts = [(part.predicted, part.shadow) for part in scored]
        return ids, _combine(parts, self._version, self._shadow_version, _seconds_of(scored))


class DaskPredictor:
    """Loads model versions on every worker and predicts batches partitioned across them.

    The version in use changes only between batches (:meth:`activate`): the tasks of one batch
    all name the same version, so no batch is predicted by a mix of versions.
    """

    def __init__(
        self,
        client: Client,
        backend: Backend,
        input_format: InputFormat = "json",
        batches_in_flight: int = 1,
        probabilities: bool = False,
    ) -> None:
        self._client = client
        self._plugins = SharedPlugins(client)  # other consumers of the cluster may serve the same versions
        self._probabilities = probabilities  # each prediction also carries a classifier's class probabilities
        self._backend = backend
        self._input_format = input_format  # of the raw values given to predict_lines and produce_lines
        self._batches_in_flight = max(1, batches_in_flight)
        self.version: str | None = None
        self.shadow_version: str | None = None
        self._workers: list[str] = []
        self._workers_checked_at = -WORKER_COUNT_TTL_S
        self._next_worker = itertools.count()  # where the next part of raw records goes
        self._sender = PartSender(client, self._running_workers)

    def load(self, plugin: ModelPlugin) -> None:
        """Register the plugin (unless the cluster has it already, for another consumer); returns
        once every current worker has loaded and verified it."""
        # Every worker (and each that joins) gets the handler the raw parts go to, once per cluster.
        self._plugins.register(PartScorerPlugin(), PartScorerPlugin.name)
        try:
            self._plugins.register(plugin, fingerprint(plugin.made_from()), hold=True)
        except Exception as exc:
            self._forget(plugin.version)
            raise ModelLoadError(f"version {plugin.version} failed to load: {type(exc).__name__}: {exc}") from exc
        self._log_warm_ups(plugin.name)

    def share(self, plugin: WorkerPlugin, made_from: str) -> None:
        """Register a plugin every consumer of the cluster uses alike (a worker's producer) once
        per cluster: registered again, it would be set up again under another consumer's batch."""
        self._plugins.register(plugin, made_from)

    def _log_warm_ups(self, name: str) -> None:
        """One line per worker on what warming the serving path up cost it (a local cluster keeps
        only its workers' warnings, so their own log lines do not show)."""
        try:
            warm_ups = self._client.run(warm_up_of, name)
        except (OSError, TimeoutError, KeyError) as exc:
            log.warning("cannot read the workers' warm-up times: %s", exc)
            return
        for address, (parts, seconds) in sorted(warm_ups.items()):
            log.info("serving path (%s) warmed up on Dask worker %s in %.2f s", ", ".join(parts), address, seconds)

    def activate(self, version: str) -> str | None:
        """Serve ``version`` from the next batch on; the previous version is unloaded."""
        previous, self.version = self.version, version
        if previous is not None and previous not in {version, self.shadow_version}:
            self._forget(previous)
        return previous

    def set_shadow(self, version: str | None) -> None:
        previous, self.shadow_version = self.shadow_version, version
        if previous is not None and previous not in {version, self.version}:
            self._forget(previous)

    def predict(self, features: np.ndarray) -> Prediction:
        """Predictions of host feature rows, in their order, by the version in use.

        The rows are split across the workers as host arrays; each worker turns its part into a
        dataframe of its backend (cuDF on GPU workers) and sends back host results.
        """
        version, shadow_version = self._versions()
        parts = split_rows(features, len(self._worker_addresses()))
        futures = [
            self._client.submit(predict_on_worker, part, version, shadow_version, self._probabilities, pure=False)
            for part in parts
        ]
        return _combine(self._client.gather(futures), version, shadow_version)

    def predict_lines(
        self, values: list[bytes], keys: list[bytes | None], n_features: int
    ) -> tuple[pa.Array, Prediction] | None:
        """The ids and predictions of raw records (values and keys in step), parsed on the workers;
        ``None`` when any record is not clean (the caller decodes the batch and dead-letters the
        bad ones)."""
        return self.score_lines(values, keys, n_features).outcome()

    def score_lines(self, values: list[bytes], keys: list[bytes | None], n_features: int) -> ScoredParts:
        """:meth:`predict_lines`, returning at once: the parts under way on the workers."""
        version, shadow_version = self._versions()
        extra = (version, shadow_version, self._input_format, self._probabilities)
        _, calls = self._submit_parts(score_lines_on_worker, values, keys, n_features, *extra)
        return ScoredParts(calls, version, shadow_version)

    def produce_lines(
        self,
        values: list[bytes],
        keys: list[bytes | None],
        n_features: int,
        output_topic: str,
        task: Callable[..., ScoredLines | None],
    ) -> ProducedParts:
        """Score raw records (values and keys in step) on the workers with ``task``, which also
        produces the predictions there (the sink's, :func:`stream.sink.workers.score_and_produce_on_worker`);
        returns at once, before the workers are done."""
        version, shadow_version = self._versions()
        extra = (version, shadow_version, output_topic, self._input_format, self._probabilities)
        bounds, calls = self._submit_parts(task, values, keys, n_features, *extra)
        return ProducedParts(bounds, calls, version, shadow_version)

    def _versions(self) -> tuple[str, str | None]:
        if self.version is None:
            raise ModelLoadError("no model version is active")
        return self.version, self.shadow_version

    def _submit_parts(
        self, task: Callable[..., Any], values: list[bytes], keys: list[bytes | None], n_features: int, *args: Any
    ) -> tuple[list[tuple[int, int]], list[PartCall]]:
        """``task(payload, keys, n_features, *args)`` on each part of the batch, each part on the
        next worker in turn (one request to that worker, :mod:`stream.predict.dispatch`);
        the parts' bounds and calls, under way.

        A batch is split into only as many parts as give every worker two tasks with the batches
        in flight: with twice as many batches in flight as workers, each batch goes whole to one
        worker, which predicts it in one piece and makes one round trip for it.
        """
        workers = self._worker_addresses() or self._running_workers(True)
        if not workers:
            raise WorkerUnreachableError("the Dask scheduler lists no running worker")
        bounds = split_bounds(len(values), parts_per_batch(len(workers), self._batches_in_flight))
        # One thread submits (the pipeline's prepare thread), so a batch's parts take consecutive turns.
        calls = []
        for start, stop in bounds:
            target = workers[next(self._next_worker) % len(workers)]
            payload = joined(self._input_format, values[start:stop])
            part = (payload, _part_keys(keys, start, stop), n_features, *args)
            calls.append(PartCall(self._sender, target, task, part))
        return bounds, calls

    def _forget(self, version: str) -> None:
        """Unload ``version`` from the workers, unless another consumer of the cluster serves it."""
        self._plugins.release(plugin_name(version))

    def _worker_addresses(self) -> list[str]:
        """The workers' addresses, asked of the scheduler at most every few seconds."""
        return self._running_workers(False)

    def _running_workers(self, now: bool) -> list[str]:
        """The running workers' addresses: asked of the scheduler when ``now`` or when the list
        is older than :data:`WORKER_COUNT_TTL_S`, else the list read last."""
        checked = time.monotonic()
        if now or checked >= self._workers_checked_at + WORKER_COUNT_TTL_S:
            workers = self._client.scheduler_info(n_workers=-1)["workers"]
            # A paused or closing worker would hold a part up.
            self._workers = sorted(address for address, info in workers.items() if info.get("status") == "running")
            self._workers_checked_at = checked
        return self._workers


def _combine(
    answers: list[tuple[Any, Any]],
    version: str,
    shadow_version: str | None,
    worker_seconds: tuple[tuple[str, float], ...] = (),
) -> Prediction:
    """One prediction of the parts' (frame, shadow) answers, in the order of the parts."""
    frame = pd.concat([frame for frame, _ in answers], ignore_index=True)
    shadow = None if shadow_version is None else np.concatenate([shadow for _, shadow in answers])
    return Prediction(version, frame, shadow, shadow_version, worker_seconds)


def _seconds_of(parts: list[ScoredLines]) -> tuple[tuple[str, float], ...]:
    return tuple(timing for part in parts for timing in part.seconds)


def _part_keys(keys: list[bytes | None], start: int, stop: int) -> pa.Array:
    """A part's keys as one Arrow array of their own: one object in the task, not a list Dask walks
    through, and not a slice of the batch's array (a pickled slice carries the whole buffers)."""
    return pa.array(keys[start:stop], pa.binary())


def parts_per_batch(workers: int, batches_in_flight: int) -> int:
    """Parts per batch that give each of ``workers`` two tasks with ``batches_in_flight`` batches
    (one predicted while the one before it is produced), and never more parts than workers."""
    wanted = -(-TASKS_PER_WORKER * workers // max(1, batches_in_flight))  # rounded up
    return max(1, min(workers, wanted))


def split_rows(rows: Any, parts: int) -> list[Any]:
    """Contiguous, nearly equal row ranges (of an array or a list); never an empty part."""
    return [rows[start:stop] for start, stop in split_bounds(len(rows), parts)]


def split_bounds(count: int, parts: int) -> list[tuple[int, int]]:
    """The ``[start, stop)`` bounds of :func:`split_rows`."""
    parts = max(1, min(parts, count))
    return list(itertools.pairwise([count * i // parts for i in range(parts + 1)]))
