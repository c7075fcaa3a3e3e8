"""Scoring a split with the served model's own code, partition by partition on the Dask workers.

The model of the rows it is scored against (a :class:`~stream.predict.model.KnnIndex`) is sent
once to every worker; each query partition is predicted there by a
:class:`~stream.predict.model.KnnPredictor` (the same scaling, search, weights and vote as
serving) and reduces to a few sums, which are all that reach the client. One neighbour query
at the largest k serves every smaller k: the k nearest are the first k of the largest k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import numpy as np
from distributed import Client

from stream.backend import Backend, to_host_numpy
from stream.predict.model import KnnIndex, build_predictor, label_array


def score_by_k(
    client: Client,
    index: KnnIndex,
    query: Any,
    features: Sequence[str],
    label: str,
    ks: Sequence[int],
    backend: Backend,
) -> dict[int, float]:
    """Accuracy (classification) or R² (regression) of ``index``'s model on ``query``, per k."""
    [shared] = client.scatter([index], broadcast=True)
    terms = dask.delayed(score_terms)
    per_partition = [terms(part, shared, features, label, ks, backend) for part in query.to_delayed()]
    computed = client.compute(per_partition, sync=True)
    return combine_terms(computed, ks, index.task)


def score_terms(
    query: Any, index: KnnIndex, features: Sequence[str], label: str, ks: Sequence[int], backend: Backend
) -> np.ndarray:
    """Per k: the correct count (classification) or the squared error (regression); then the
    rows, and the truth's mean and sum of squared deviations (for a stable R²)."""
    truth = _host_column(query[label])
    if len(truth) == 0:
        return np.zeros(len(ks) + 3)
    predictor = build_predictor(index, backend)
    distances, indices = predictor.kneighbors(query[list(features)].values, max(ks))
    per_k = []
    for k in ks:
        predicted = predictor.labels_host(predictor.combine(distances[:, :k], indices[:, :k]))
        if index.task == "classification":
            per_k.append(float(np.sum(predicted == label_array(truth))))
        else:
            per_k.append(float(np.sum((truth.astype(np.float64) - predicted) ** 2)))
    values = truth.astype(np.float64) if index.task == "regression" else np.zeros(len(truth))
    mean = values.mean()
    return np.array([*per_k, len(truth), mean, float(np.sum((values - mean) ** 2))])


def combine_terms(terms: Sequence[np.ndarray], ks: Sequence[int], task: str) -> dict[int, float]:
    """The scores of every k from the partitions' terms; the deviations are combined pairwise
    (Chan et al.), so R² stays accurate for targets far from zero."""
    count, mean, squares = 0.0, 0.0, 0.0
    per_k = np.zeros(len(ks))
    for part in terms:
        rows = part[len(ks)]
        if rows == 0:
            continue
        per_k += part[: len(ks)]
        part_mean, part_squares = part[len(ks) + 1], part[len(ks) + 2]
        total = count + rows
        squares += part_squares + (part_mean - mean) ** 2 * count * rows / total
        mean += (part_mean - mean) * rows / total
        count = total
    if count == 0:
        return {k: float("nan") for k in ks}
    if task == "classification":
        return {k: float(per_k[i] / count) for i, k in enumerate(ks)}
    return {k: r2_of_sums(per_k[i], squares) for i, k in enumerate(ks)}


def r2_of_sums(residual: float, spread: float) -> float:
    """scikit-learn's ``r2_score`` (``force_finite``): 1 for a perfect fit of a constant, else 0."""
    if spread > 0:
        return float(1.0 - residual / spread)
    return 1.0 if residual == 0 else 0.0


def _host_column(column: Any) -> np.ndarray:
    to_pandas = getattr(column, "to_pandas", None)
    return to_host_numpy((to_pandas() if callable(to_pandas) else column).to_numpy())
