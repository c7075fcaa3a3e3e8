"""The benchmark's model and its ceiling: a model of the benchmark's rows (:mod:`stream.bench.data`)
and its neighbour index, published to a fresh store, and (a), every Dask worker predicting batches
of the benchmark's size of held-out queries with it, concurrently, the data already on the worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from model_store import ManifestDraft, ModelStore
from stream.backend import Backend
from stream.bench.data import BenchData
from stream.predict.cluster import close_client, start_client
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from stream.predict.plugin import ModelPlugin, worker_predictor
from stream.settings import BenchSettings
from stream.train.indexing import build_model_index


def publish_index(
    settings: BenchSettings, backend: Backend, workdir: Path, data: BenchData
) -> tuple[str, dict[str, Any]]:
    """A model of ``data`` with the ``--index`` asked for, tuned on the held-out queries, in a fresh
    store; returns the store root and the index's manifest record (its ``recall`` among them)."""
    n_features = data.features.shape[1]
    index = index_from_training_data("classification", settings.k, "euclidean", data.features, data.labels)
    model_index = build_model_index(
        settings.index, index, backend, settings.min_recall, (data.queries, data.query_labels)
    )
    root = str(workdir / "models")
    draft = ManifestDraft(
        task="classification", k=settings.k, metric="euclidean",
        feature_names=tuple(f"f{i}" for i in range(n_features)), n_features=n_features,
        classes=tuple(index.classes.tolist()), training_rows=len(data.features), backend=backend, format=FORMAT,
        extra={"index": model_index.record},
    )  # fmt: skip
    files = {MODEL_FILE: index.to_npz(), **model_index.files}
    ModelStore(root).publish("bench", files, draft, aliases=["production"])
    return root, model_index.record


def raw_throughput(settings: BenchSettings, backend: Backend, store: str, queries: np.ndarray) -> float:
    """Rows per second of all workers predicting concurrently, data already on the workers."""
    client = start_client(backend, settings.scheduler, settings.workers, dashboard_address=settings.dashboard_address)
    batch = np.resize(queries, (settings.batch_size, queries.shape[1]))  # the held-out queries, repeated
    try:
        manifest = ModelStore(store).resolve("bench@production")
        client.register_plugin(ModelPlugin(store, manifest.name, manifest.version, backend))
        timings = client.run(time_predictions, manifest.version, batch)
    finally:
        close_client(client)
    # The workers ran at the same time: the sum of their rates is the aggregate ceiling.
    return float(sum(rows / seconds for rows, seconds in timings.values()))


def time_predictions(
    version: str, rows: np.ndarray, min_seconds: float = 3.0, dask_worker: Any = None
) -> tuple[int, float]:
    """On a Dask worker (``client.run``): rows predicted and seconds taken, after a warm-up batch.

    Predicts the same batch (``rows``) over and over, at least three times and for at least ``min_seconds``.
    """
    predictor = worker_predictor(version, dask_worker)
    xp = predictor.array_module
    batch_size = len(rows)
    batch = xp.asarray(np.ascontiguousarray(rows, dtype=np.float32))
    predictor.predict_host(batch)  # the serving path; its results on the host mean the GPU is done
    rounds, started = 0, time.perf_counter()
    while rounds < 3 or time.perf_counter() - started < min_seconds:
        predictor.predict_host(batch)
        rounds += 1
    return rounds * batch_size, time.perf_counter() - started
