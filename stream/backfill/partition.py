"""The Dask task of ``knnstream score``: one input partition in, its predictions out.

It runs on a worker that holds the model through the streaming worker's
:class:`~stream.predict.plugin.ModelPlugin`, and predicts with that worker's predictor of the
job's version.
Rows with a missing id or a missing or non-finite feature are left out and counted; each
task reports its counts as a Dask event, which the client turns into progress.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from distributed import get_worker

from model_store import Manifest
from stream.backend import Backend, get_array_pkg, get_df_pkg
from stream.predict.plugin import worker_predictor
from stream.records.encode import probability_objects

OUTPUT_COLUMNS = ("id", "prediction", "model_version", "distance")


@dataclass(frozen=True)
class PartitionJob:
    """What every task needs; small, so it travels with each task."""

    backend: Backend
    version: str
    id_column: str
    features: tuple[str, ...]
    dtypes: dict[str, Any]
    event_topic: str


def output_meta(backend: Backend, manifest: Manifest, probabilities: bool = False) -> Any:
    """The empty output frame: the columns and types of every output part (``probabilities``,
    each row's JSON object of class probabilities, when asked of a classifier)."""
    df = get_df_pkg(backend)
    if manifest.task == "classification":
        prediction = df.Series(np.asarray(manifest.classes)[:0])
    else:
        prediction = df.Series([], dtype="float64")
    columns = {
        "id": df.Series([], dtype="str"),
        "prediction": prediction,
        "model_version": df.Series([], dtype="str"),
        "distance": df.Series([], dtype="float32"),
    }
    if probabilities and manifest.task == "classification":
        columns["probabilities"] = df.Series([], dtype="str")
    return df.DataFrame(columns)


def score_partition(frame: Any, job: PartitionJob, partition_info: dict[str, Any] | None = None) -> Any:
    """Predictions of the scorable rows of ``frame`` by the job's model version."""
    predictor = worker_predictor(job.version)
    xp = get_array_pkg(job.backend)
    matrix = feature_matrix(frame, job.features, job.backend)
    missing_id = xp.asarray(frame[job.id_column].isna().values)
    bad_features = ~xp.isfinite(matrix).all(axis=1) & ~missing_id
    kept = xp.flatnonzero(~(missing_id | bad_features))
    rejected = {"missing_id": int(missing_id.sum()), "missing_or_non_finite": int(bad_features.sum())}
    if len(kept) == 0:
        _report(job, partition_info, len(frame), 0, rejected)
        return _empty(job)
    predicted = predictor.predict(matrix[kept])
    out = get_df_pkg(job.backend).DataFrame(
        {
            "id": frame[job.id_column].iloc[kept].astype("str").reset_index(drop=True),
            "prediction": predicted["prediction"].reset_index(drop=True),
        }
    )
    out["model_version"] = job.version
    out["distance"] = predicted["distance"].reset_index(drop=True)
    if "probabilities" in job.dtypes:
        _, _, shares = predictor.predict_proba_host(matrix[kept])
        texts = probability_objects(predictor.index.classes, shares).to_numpy(zero_copy_only=False)
        out["probabilities"] = get_df_pkg(job.backend).Series(texts)
    _report(job, partition_info, len(frame), len(kept), rejected)
    return out.astype(job.dtypes)


def feature_matrix(frame: Any, features: Sequence[str], backend: Backend) -> Any:
    """The features as float32 rows (NumPy or CuPy); missing values become NaN, overflow infinity."""
    columns = frame[list(features)]
    if backend == "gpu":
        matrix = columns.to_cupy(dtype="float64", na_value=np.nan)
        return matrix.astype("float32")
    matrix = columns.to_numpy(dtype=np.float64, na_value=np.nan)
    with np.errstate(over="ignore"):
        return matrix.astype(np.float32)


def _report(
    job: PartitionJob, partition_info: dict[str, Any] | None, records: int, predicted: int, rejected: dict[str, int]
) -> None:
    """Tell the client what this partition held (it deduplicates by partition number)."""
    message = {
        "partition": partition_info["number"] if partition_info else -1,
        "records": records,
        "predicted": predicted,
        "rejected": {reason: count for reason, count in rejected.items() if count},
    }
    get_worker().log_event(job.event_topic, message)


def _empty(job: PartitionJob) -> Any:
    df = get_df_pkg(job.backend)
    return df.DataFrame({column: df.Series([], dtype=dtype) for column, dtype in job.dtypes.items()})
