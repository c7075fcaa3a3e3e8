"""The benchmark's model and its ceiling: an index of random rows published to a fresh store,
and (a), every Dask worker predicting batches of the benchmark's size with it, concurrently,
the data already on the worker."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from model_store import ManifestDraft, ModelStore
from stream.backend import Backend
from stream.predict.cluster import close_client, start_client
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from stream.predict.plugin import ModelPlugin, worker_predictor
from stream.settings import BenchSettings


def publish_index(settings: BenchSettings, backend: Backend, workdir: Path) -> str:
    """A model of ``index_rows`` random rows in a fresh store; returns the store root."""
    rng = np.random.default_rng(0)
    features = rng.normal(size=(settings.index_rows, settings.features)).astype(np.float32)
    labels = rng.integers(0, 10, settings.index_rows)
    index = index_from_training_data("classification", settings.k, "euclidean", features, labels)
    root = str(workdir / "models")
    draft = ManifestDraft(
        task="classification", k=settings.k, metric="euclidean",
        feature_names=tuple(f"f{i}" for i in range(settings.features)), n_features=settings.features,
        classes=tuple(index.classes.tolist()), training_rows=settings.index_rows, backend=backend, format=FORMAT,
    )  # fmt: skip
    ModelStore(root).publish("bench", {MODEL_FILE: index.to_npz()}, draft, aliases=["production"])
    return root


def raw_throughput(settings: BenchSettings, backend: Backend, store: str) -> float:
    """Rows per second of all workers predicting concurrently, data already on the workers."""
    client = start_client(backend, settings.scheduler, settings.workers, dashboard_address=settings.dashboard_address)
    try:
        manifest = ModelStore(store).resolve("bench@production")
        client.register_plugin(ModelPlugin(store, manifest.name, manifest.version, backend))
        timings = client.run(time_predictions, manifest.version, settings.batch_size, settings.features)
    finally:
        close_client(client)
    # The workers ran at the same time: the sum of their rates is the aggregate ceiling.
    return float(sum(rows / seconds for rows, seconds in timings.values()))


def time_predictions(
    version: str, batch_size: int, n_features: int, min_seconds: float = 3.0, dask_worker: Any = None
) -> tuple[int, float]:
    """On a Dask worker (``client.run``): rows predicted and seconds taken, after a warm-up batch.

    Predicts the same batch over and over, at least three times and for at least ``min_seconds``.
    """
    predictor = worker_predictor(version, dask_worker)
    xp = predictor.array_module
    batch = xp.asarray(np.random.default_rng(1).normal(size=(batch_size, n_features)).astype(np.float32))
    predictor.predict_host(batch)  # the serving path; its results on the host mean the GPU is done
    rounds, started = 0, time.perf_counter()
    while rounds < 3 or time.perf_counter() - started < min_seconds:
        predictor.predict_host(batch)
        rounds += 1
    return rounds * batch_size, time.perf_counter() - started
