"""``knnstream train``: read, split, choose k, score the holdout, fit on every row, publish.

Every score is the served model's own: the model of the training part (or of the fit part,
for ``--k auto``) predicts the holdout (or validation) rows through the serving code
(:mod:`stream.train.neighbours`). The published model is then fitted on every row given, as
scikit-learn users refit after model selection, and loaded back through the serving code
before any alias moves to it.
"""

from __future__ import annotations

import logging
import os
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
from stream.predict.model import FORMAT, MODEL_FILE, KnnIndex, index_from_training_data
from stream.predict.plugin import stored_predictor
from stream.settings import TrainSettings
from stream.train.data import Columns, choose_columns, matching_files, read_table
from stream.train.indexing import ModelIndex, build_model_index, check_buildable
from stream.train.neighbours import score_by_k

log = logging.getLogger(__name__)
VERIFY_ROWS = 100


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
    table = client.persist(table[[*columns.features, columns.label]].dropna())
    train_part, holdout_part = holdout_split(table, settings, client)
    evaluation, train_index = _evaluate(settings, backend, client, train_part, holdout_part, columns)
    if evaluation.holdout:
        log.info("holdout %s with k=%d: %s", settings.task, evaluation.k, evaluation.holdout)
    if settings.index == "brute":
        train_index = None  # nothing is tuned on it: let go before every row's index is built
    index = fit_index(settings, evaluation.k, table, columns, "the data")
    # without a holdout the training part is every row: the served index is the one tuned on
    tuned_on = index if train_index is None else train_index
    model_index = _model_index(settings, backend, index, tuned_on, holdout_part, columns)
    store = ModelStore(settings.store)
    draft = _manifest_draft(settings, backend, columns, index, evaluation, model_index)
    manifest = store.publish(settings.name, {MODEL_FILE: index.to_npz(), **model_index.files}, draft)
    _verify_or_delete(client, backend, store, manifest, index)
    if settings.alias:
        store.promote(settings.name, settings.alias, manifest.version)
    return manifest


def holdout_split(table: Any, settings: TrainSettings, client: Client) -> tuple[Any, Any | None]:
    """The training part and the holdout (``None`` with ``--holdout-fraction 0``), both non-empty."""
    if settings.holdout_fraction == 0:
        return table, None
    fraction = settings.holdout_fraction
    train_part, holdout_part = client.persist(table.random_split([1 - fraction, fraction], random_state=settings.seed))
    if len(holdout_part) == 0:
        raise TrainingError(f"the holdout split is empty: raise --holdout-fraction (now {fraction}) or set it to 0")
    if len(train_part) == 0:
        raise TrainingError(f"no training rows left after the holdout split: lower --holdout-fraction (now {fraction})")
    return train_part, holdout_part


def fit_index(settings: TrainSettings, k: int, part: Any, columns: Columns, what: str) -> KnnIndex:
    """The served model's index of ``part``'s rows, with the job's scale, metric and weights."""
    frame = part.compute()
    frame = frame.to_pandas() if hasattr(frame, "to_pandas") else frame
    if k > len(frame):
        raise TrainingError(f"--k {k} is more than the {len(frame)} training rows of {what}: lower --k")
    return index_from_training_data(
        settings.task,
        k,
        settings.metric,
        frame[list(columns.features)].to_numpy(dtype=np.float64),
        frame[columns.label].to_numpy(),
        scale=settings.scale,
        weights=settings.weights,
        p=settings.p,
    )


def _model_index(
    settings: TrainSettings,
    backend: Backend,
    served: KnnIndex,
    tuned_on: KnnIndex,
    holdout_part: Any | None,
    columns: Columns,
) -> ModelIndex:
    """The served index (:mod:`stream.train.indexing`): tuned on an index of the training part
    against the holdout's rows, which it does not hold, then built the same way over every row;
    none for brute force."""
    if settings.index == "brute":
        return build_model_index("brute", served, backend, settings.min_recall, (np.empty((0, 0)), np.empty(0)))
    holdout = (np.empty((0, len(columns.features))), np.empty(0))
    if holdout_part is not None:
        frame = holdout_part.compute()
        frame = frame.to_pandas() if hasattr(frame, "to_pandas") else frame
        holdout = (frame[list(columns.features)].to_numpy(dtype=np.float64), frame[columns.label].to_numpy())
    return build_model_index(
        settings.index, tuned_on, backend, settings.min_recall, holdout, settings.seed, served=served
    )


def _evaluate(
    settings: TrainSettings,
    backend: Backend,
    client: Client,
    train_part: Any,
    holdout_part: Any | None,
    columns: Columns,
) -> tuple[Evaluation, KnnIndex | None]:
    """The holdout's score of the training part's index (which :func:`_model_index` tunes the
    served index on), and that index; none without a holdout."""
    k, validation = _choose_k(settings, backend, client, train_part, columns)
    if holdout_part is None:
        return Evaluation(k, {}, validation), None
    index = fit_index(settings, k, train_part, columns, "the training part")
    score = score_by_k(client, index, holdout_part, columns.features, columns.label, [k], backend)[k]
    metric_name = "accuracy" if settings.task == "classification" else "r2"
    return Evaluation(k, {metric_name: score}, validation), index


def _choose_k(
    settings: TrainSettings, backend: Backend, client: Client, train_part: Any, columns: Columns
) -> tuple[int, dict[int, float]]:
    """``--k``, or with ``--k auto`` the best candidate on a validation split of the training part
    (ties to the smallest k), by a model of the rest of it."""
    if settings.k != "auto":
        return int(settings.k), {}
    fit_part, validation_part = client.persist(train_part.random_split([0.8, 0.2], random_state=settings.seed + 1))
    fit_rows = len(fit_part)
    if len(validation_part) == 0 or fit_rows == 0:
        raise TrainingError("the validation split of --k auto is empty: give more rows, or a fixed --k")
    candidates = [k for k in settings.k_candidate_list() if k <= fit_rows]
    if not candidates:
        raise TrainingError(f"every --k-candidates value is more than the {fit_rows} rows --k auto fits on")
    index = fit_index(settings, max(candidates), fit_part, columns, "the validation fit")
    validation = score_by_k(client, index, validation_part, columns.features, columns.label, candidates, backend)
    k = max(validation, key=lambda candidate: (validation[candidate], -candidate))
    log.info("k=auto: validation scores %s; chose k=%d", validation, k)
    return k, validation


def _verify_or_delete(client: Client, backend: Backend, store: ModelStore, manifest: Manifest, index: KnnIndex) -> None:
    """Load the published version on a Dask worker the way serving does and predict a few of its
    rows; a version that fails is deleted, so nothing that cannot be served stays published."""
    root = store.root if "://" in store.root else os.path.abspath(store.root)
    rows = index.features[:VERIFY_ROWS]
    original = np.asarray(rows, dtype=np.float64)
    if len(index.scale_mean):
        original = original * index.scale_scale + index.scale_mean
    try:
        predicted = client.submit(predict_published, root, manifest.name, manifest.version, backend, original).result()
        if len(predicted) != len(rows):
            raise TrainingError(f"predicted {len(predicted)} rows of {len(rows)}")
    except Exception as exc:
        store.delete_version(manifest.name, manifest.version)
        raise TrainingError(f"the model written as {manifest.name}:{manifest.version} cannot be served: {exc}") from exc


def predict_published(store_root: str, name: str, version: str, backend: Backend, rows: np.ndarray) -> np.ndarray:
    """Dask task: read a published version from the store and predict ``rows`` with it."""
    loaded = ModelStore(store_root).load(f"{name}:{version}")
    index = KnnIndex.from_npz(loaded.files[MODEL_FILE])
    predictions, _ = stored_predictor(loaded.manifest, loaded.files, index, backend).predict_host(rows)
    return predictions


def _manifest_draft(
    settings: TrainSettings,
    backend: Backend,
    columns: Columns,
    index: KnnIndex,
    evaluation: Evaluation,
    model_index: ModelIndex,
) -> ManifestDraft:
    extra: dict[str, Any] = {
        "label": columns.label,
        "validation_by_k": {str(k): v for k, v in evaluation.validation_by_k.items()},
        "data": settings.data,
        "scale": settings.scale,
        "weights": settings.weights,
        "holdout_fraction": settings.holdout_fraction,
    }
    if settings.metric == "minkowski":
        extra["p"] = settings.p
    if not evaluation.holdout:
        extra["holdout"] = "none: --holdout-fraction 0"
    return ManifestDraft(
        task=settings.task,
        k=evaluation.k,
        metric=settings.metric,
        feature_names=columns.features,
        n_features=len(columns.features),
        classes=tuple(index.classes.tolist()),
        training_rows=len(index.features),
        holdout_metrics=evaluation.holdout,
        library_versions=_library_versions(backend),
        backend=backend,
        format=FORMAT,
        extra={**extra, "index": model_index.record},
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
