"""A distributed exact KNN on Dask: every query partition against every index partition.

Each task searches one index partition brute force (scikit-learn or cuML, by backend) for
the k nearest rows of one query partition; the candidates are merged per query partition,
so one query at the largest k serves every smaller k.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask
import numpy as np

from stream.backend import Backend, backend_of_frame, to_host_numpy
from stream.predict.model import vote


def partition_neighbours(
    query: Any, index: Any, features: Sequence[str], label: str, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Distances and labels of the k nearest ``index`` rows of each ``query`` row (host arrays)."""
    backend = backend_of_frame(query)
    k = min(k, len(index))
    rows = len(query)
    if k == 0 or rows == 0:
        return np.empty((rows, 0), np.float32), np.empty((rows, 0))
    search = _nearest_neighbours(backend, k, metric).fit(_matrix(index, features))
    distances, positions = search.kneighbors(_matrix(query, features))
    labels = index[label].to_numpy()[to_host_numpy(positions)]
    return to_host_numpy(distances).astype(np.float32), labels


def merge_neighbours(candidates: Sequence[tuple[np.ndarray, np.ndarray]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest of several candidate sets (nearest first; ties keep partition order)."""
    distances = np.concatenate([d for d, _ in candidates], axis=1)
    labels = np.concatenate([labels for _, labels in candidates], axis=1)
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(distances, order, axis=1), np.take_along_axis(labels, order, axis=1)


def score_by_k(
    query: Any,
    index: Any,
    features: Sequence[str],
    label: str,
    ks: Sequence[int],
    metric: str,
    task: str,
    classes: np.ndarray,
) -> dict[int, float]:
    """Accuracy (classification) or R² (regression) of ``query`` against ``index``, for every k.

    One neighbour query at the largest k; each query partition reduces to a few sums on its
    worker, and only those sums reach the client.
    """
    k_max = max(ks)
    search = dask.delayed(partition_neighbours)
    merge = dask.delayed(merge_neighbours)
    terms = dask.delayed(score_terms)
    index_parts = index.to_delayed()
    per_partition = []
    for query_part in query.to_delayed():
        candidates = [search(query_part, index_part, features, label, k_max, metric) for index_part in index_parts]
        per_partition.append(terms(query_part, label, merge(candidates, k_max), ks, task, classes))
    (computed,) = dask.compute(per_partition)
    return combine_terms(computed, ks, task)


def score_terms(
    query: Any, label: str, merged: tuple[np.ndarray, np.ndarray], ks: Sequence[int], task: str, classes: np.ndarray
) -> np.ndarray:
    """Per k: correct count (classification) or squared error (regression); then n, Σy, Σy²."""
    truth = query[label].to_numpy()
    neighbours = merged[1]
    per_k = []
    for k in ks:
        if task == "classification":
            codes = np.searchsorted(classes, neighbours[:, :k])
            per_k.append(float(np.sum(classes[vote(codes, len(classes), np)] == truth)))
        else:
            predicted = neighbours[:, :k].astype(np.float64).mean(axis=1)
            per_k.append(float(np.sum((truth.astype(np.float64) - predicted) ** 2)))
    values = truth.astype(np.float64) if task == "regression" else np.zeros(len(truth))
    return np.array([*per_k, len(truth), values.sum(), (values**2).sum()])


def combine_terms(terms: Sequence[np.ndarray], ks: Sequence[int], task: str) -> dict[int, float]:
    total = np.sum(terms, axis=0)
    rows, value_sum, square_sum = total[len(ks)], total[len(ks) + 1], total[len(ks) + 2]
    if rows == 0:
        return {k: float("nan") for k in ks}
    if task == "classification":
        return {k: float(total[i] / rows) for i, k in enumerate(ks)}
    spread = square_sum - value_sum**2 / rows
    return {k: float(1.0 - total[i] / spread) if spread > 0 else 0.0 for i, k in enumerate(ks)}


def _matrix(frame: Any, features: Sequence[str]) -> Any:
    return frame[list(features)].values.astype("float32")


def _nearest_neighbours(backend: Backend, k: int, metric: str) -> Any:
    if backend == "gpu":
        from cuml.neighbors import NearestNeighbors as GpuNearestNeighbors

        return GpuNearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric)
    from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k, algorithm="brute", metric=metric)
