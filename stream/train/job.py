"""``knnstream train``: read, split, choose k, evaluate on a holdout, publish the served model."""

from __future__ import annotations

import logging
import platform
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np
from distributed import Client

from model_store import Manifest, ManifestDraft, ModelStore
from stream.backend import Backend, resolve_backend
from stream.errors import TrainingError
from stream.predict.cluster import close_client, start_client
from stream.predict.model import FORMAT, MODEL_FILE, index_from_training_data
from stream.settings import TrainSettings
from stream.train.data import Columns, choose_columns, matching_files, read_table
from stream.train.indexing import ModelIndex, build_model_index, check_buildable
from stream.train.neighbours import score_by_k

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Evaluation:
    k: int
    holdout: dict[str, float]
    validation_by_k: dict[int, float]


def train(settings: TrainSettings, client: Client | None = None) -> Manifest:
    """Fit, evaluate and publish; uses ``client`` or starts (and stops) a cluster of its own."""
    backend = resolve_backend(settings.backend)
    matching_files(settings.data)  # no data: one line, before a cluster starts
    own_client = client is None
    client = client or start_client(
        backend,
        settings.scheduler,
        settings.dask_workers,
        settings.rmm_pool_size,
        dashboard_address=settings.dashboard_address,
    )
    try:
        with client.as_current():
            return _train(settings, backend, client)
    finally:
        if own_client:
            close_client(client)


def _train(settings: TrainSettings, backend: Backend, client: Client) -> Manifest:
    check_buildable(settings.index, backend, settings.metric)
    table = read_table(settings.data, backend)
    columns = choose_columns(table, settings.label, settings.feature_list())
    table = table[[*columns.features, columns.label]].dropna()
    train_part, holdout_part = table.random_split(
        [1 - settings.holdout_fraction, settings.holdout_fraction], random_state=settings.seed
    )
    train_part, holdout_part = client.persist([train_part, holdout_part])
    classes = _classes(train_part, columns, settings.task)
    evaluation = _evaluate(settings, backend, client, train_part, holdout_part, columns, classes)
    features, labels = _collect(train_part, columns)
    if len(features) == 0:
        raise TrainingError(f"no training rows left in {settings.data} after the holdout split")
    log.info("holdout %s with k=%d: %s", settings.task, evaluation.k, evaluation.holdout)
    index = index_from_training_data(settings.task, evaluation.k, settings.metric, features, labels)
    model_index = _model_index(settings, backend, index, holdout_part, columns)
    draft = _manifest_draft(settings, backend, columns, index.classes, len(features), evaluation, model_index)
    files = {MODEL_FILE: index.to_npz(), **model_index.files}
    return ModelStore(settings.store).publish(
        settings.name, files, draft, aliases=[settings.alias] if settings.alias else []
    )


def _model_index(
    settings: TrainSettings, backend: Backend, index: Any, holdout_part: Any, columns: Columns
) -> ModelIndex:
    """The served index (:mod:`stream.train.indexing`), tuned on the holdout's rows; none for brute force."""
    holdout = _collect(holdout_part, columns) if settings.index != "brute" else (np.empty((0, 0)), np.empty(0))
    return build_model_index(settings.index, index, backend, settings.min_recall, holdout, settings.seed)


def _evaluate(
    settings: TrainSettings,
    backend: Backend,
    client: Client,
    train_part: Any,
    holdout_part: Any,
    columns: Columns,
    classes: np.ndarray,
) -> Evaluation:
    validation: dict[int, float] = {}
    if settings.k == "auto":
        fit_part, validation_part = train_part.random_split([0.8, 0.2], random_state=settings.seed + 1)
        validation = score_by_k(
            validation_part,
            fit_part,
            columns.features,
            columns.label,
            settings.k_candidate_list(),
            settings.metric,
            settings.task,
            classes,
        )
        k = max(validation, key=lambda candidate: (validation[candidate], -candidate))
        log.info("k=auto: validation scores %s; chose k=%d", validation, k)
    else:
        k = int(settings.k)
    if backend == "gpu":
        score = _gpu_holdout_score(client, train_part, holdout_part, columns, k, settings.task)
    else:
        score = score_by_k(
            holdout_part, train_part, columns.features, columns.label, [k], settings.metric, settings.task, classes
        )[k]
    metric_name = "accuracy" if settings.task == "classification" else "r2"
    return Evaluation(k, {metric_name: score}, validation)


def _gpu_holdout_score(
    client: Client, train_part: Any, holdout_part: Any, columns: Columns, k: int, task: str
) -> float:
    """Fit ``cuml.dask.neighbors`` across the GPUs and score the holdout with it."""
    from cuml.dask.neighbors import KNeighborsClassifier, KNeighborsRegressor

    features = list(columns.features)
    estimator_class = KNeighborsClassifier if task == "classification" else KNeighborsRegressor
    model = estimator_class(client=client, n_neighbors=k)
    model.fit(train_part[features].astype("float32"), train_part[columns.label])
    predicted = model.predict(holdout_part[features].astype("float32"))
    truth = holdout_part[columns.label].to_dask_array(lengths=True)
    predicted_array = predicted.to_dask_array(lengths=True) if hasattr(predicted, "to_dask_array") else predicted
    predicted_array = predicted_array.reshape(-1)
    if task == "classification":
        return float((predicted_array == truth).mean().compute())
    residual = ((truth - predicted_array) ** 2).sum()
    spread = ((truth - truth.mean()) ** 2).sum()
    residual, spread = (float(v) for v in client.compute([residual, spread], sync=True))
    return 1.0 - residual / spread if spread > 0 else 0.0


def _classes(train_part: Any, columns: Columns, task: str) -> np.ndarray:
    if task != "classification":
        return np.array([])
    unique = train_part[columns.label].unique().compute()
    return np.sort(unique.to_numpy())


def _collect(train_part: Any, columns: Columns) -> tuple[np.ndarray, np.ndarray]:
    frame = train_part.compute()
    features = frame[list(columns.features)].to_numpy(dtype="float32")
    return np.asarray(features), np.asarray(frame[columns.label].to_numpy())


def _manifest_draft(
    settings: TrainSettings,
    backend: Backend,
    columns: Columns,
    classes: np.ndarray,
    training_rows: int,
    evaluation: Evaluation,
    model_index: ModelIndex,
) -> ManifestDraft:
    return ManifestDraft(
        task=settings.task,
        k=evaluation.k,
        metric=settings.metric,
        feature_names=columns.features,
        n_features=len(columns.features),
        classes=tuple(classes.tolist()),
        training_rows=training_rows,
        holdout_metrics=evaluation.holdout,
        library_versions=_library_versions(backend),
        backend=backend,
        format=FORMAT,
        extra={
            "label": columns.label,
            "validation_by_k": {str(k): v for k, v in evaluation.validation_by_k.items()},
            "data": settings.data,
            "index": model_index.record,
        },
    )


def _library_versions(backend: Backend) -> dict[str, str]:
    names = ["knnstream", "numpy", "dask", "distributed", "scikit-learn", "pandas", "faiss-cpu", "hnswlib"]
    if backend == "gpu":
        names += ["cudf-cu13", "cuml-cu13", "cuvs-cu13", "dask-cuda"]
    versions = {"python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions
