"""The served KNN model: a brute-force index stored as plain arrays, never as code.

A :class:`KnnIndex` is what the model store holds (``model.npz``: the training matrix in the
model's space, the targets, the class labels, the scaling and the parameters).
:func:`build_predictor` turns it into a :class:`KnnPredictor` for one backend, so a model
trained on a GPU serves on a CPU worker and the other way round.

Predictions are computed from one neighbour query (:meth:`KnnPredictor.kneighbors`, true
metric distances) and combined by :mod:`stream.predict.vote` on both backends, as
scikit-learn's ``KNeighborsClassifier`` and ``KNeighborsRegressor`` do. A model file without
the scaling and weighting fields (written before they existed) is unscaled and uniform.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stream.backend import Backend, get_array_pkg, get_df_pkg, to_host_numpy
from stream.errors import KnnStreamError
from stream.predict.index import NeighbourIndex, exact_index
from stream.predict.memory import predict_in_pieces
from stream.predict.vote import (
    Scale,
    Weights,
    class_probabilities,
    fit_standard_scale,
    neighbour_distances,
    neighbour_mean,
    neighbour_weights,
    scaled,
    vote,
)

MODEL_FILE = "model.npz"
FORMAT = "npz"
__all__ = ["KnnIndex", "KnnPredictor", "ModelFormatError", "build_predictor", "index_from_training_data", "vote"]


class ModelFormatError(KnnStreamError):
    """A stored model file is not a knnstream KNN index."""


def _empty() -> np.ndarray:
    return np.array([], dtype=np.float64)


@dataclass(frozen=True)
class KnnIndex:
    """Everything a brute-force KNN needs: training rows, their targets, the parameters."""

    task: str
    k: int
    metric: str
    features: np.ndarray  # (rows, n_features) float32, scaled when the model has a scale
    targets: np.ndarray  # class codes (int32) for classification, values (float64) for regression
    classes: np.ndarray  # class labels in code order (int, float, bool or unicode); empty for regression
    weights: Weights = "uniform"
    p: float = 2.0  # the Minkowski power, for metric "minkowski"
    scale_mean: np.ndarray = field(default_factory=_empty)  # StandardScaler's mean_; empty: unscaled
    scale_scale: np.ndarray = field(default_factory=_empty)  # StandardScaler's scale_

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def to_npz(self) -> bytes:
        buffer = io.BytesIO()
        np.savez(
            buffer,
            task=np.array(self.task),
            k=np.array(self.k),
            metric=np.array(self.metric),
            features=self.features,
            targets=self.targets,
            classes=self.classes,
            weights=np.array(self.weights),
            p=np.array(self.p, dtype=np.float64),
            scale_mean=self.scale_mean,
            scale_scale=self.scale_scale,
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, payload: bytes) -> KnnIndex:
        """Read an index; object arrays are refused, so loading never runs stored code."""
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
                optional = {name: arrays[name] for name in ("scale_mean", "scale_scale") if name in arrays.files}
                if "weights" in arrays.files:
                    optional["weights"] = str(arrays["weights"])
                if "p" in arrays.files:
                    optional["p"] = float(arrays["p"])
                return cls(
                    task=str(arrays["task"]),
                    k=int(arrays["k"]),
                    metric=str(arrays["metric"]),
                    features=arrays["features"],
                    targets=arrays["targets"],
                    classes=arrays["classes"],
                    **optional,
                )
        except (ValueError, KeyError, OSError) as exc:
            raise ModelFormatError(f"not a knnstream model file: {exc}") from exc


def label_array(labels: Any) -> np.ndarray:
    """Labels as a NumPy array that loads without pickle: text (Python objects, pandas strings)
    as fixed-width unicode; integers, floats and booleans as they are."""
    values = np.asarray(labels)
    if values.dtype.kind == "O":  # Python objects: let NumPy find their common type
        values = np.array(values.tolist())
    return values.astype(str) if values.dtype.kind in "OSU" else values


def index_from_training_data(
    task: str,
    k: int,
    metric: str,
    features: np.ndarray,
    labels: np.ndarray,
    *,
    scale: Scale = "none",
    weights: Weights = "uniform",
    p: float = 2.0,
) -> KnnIndex:
    """Build the index from host arrays: the scale fitted (float64) on these rows, class labels
    encoded in sorted order."""
    mean, spread = fit_standard_scale(features) if scale == "standard" else (_empty(), _empty())
    matrix = np.ascontiguousarray(scaled(features, mean, spread, np))
    options: dict[str, Any] = {"weights": weights, "p": float(p), "scale_mean": mean, "scale_scale": spread}
    if task == "classification":
        classes, codes = np.unique(label_array(labels), return_inverse=True)
        return KnnIndex(task, k, metric, matrix, codes.astype(np.int32).reshape(-1), classes, **options)
    return KnnIndex(task, k, metric, matrix, np.asarray(labels, dtype=np.float64), np.array([]), **options)


class KnnPredictor:
    """A neighbour search (exact brute force unless ``search`` is given) plus the vote, on one backend."""

    def __init__(
        self, index: KnnIndex, backend: Backend, max_rows: int = 65_536, search: NeighbourIndex | None = None
    ) -> None:
        self.index = index
        self.backend = backend
        self.max_rows = max_rows
        self._xp = get_array_pkg(backend)
        self._targets = self._xp.asarray(index.targets)
        self._search = search or exact_index(index.features, index.metric, backend, index.p)
        self._rows: Any = None  # the training rows in the backend's arrays, for distance weights

    @property
    def search_kind(self) -> str:
        """The kind of neighbour index searched: ``brute`` (exact) or an approximate one."""
        return str(self._search.spec.kind)

    @property
    def array_module(self) -> Any:
        """``cupy`` or ``numpy``: where this predictor's arrays live."""
        return self._xp

    def kneighbors(self, features: Any, k: int | None = None) -> tuple[Any, Any]:
        """Distances and row numbers of the k nearest training rows, nearest first (the rows
        are scaled into the model's space first)."""
        rows = scaled(features, self.index.scale_mean, self.index.scale_scale, self._xp)
        distances, indices = self._search.kneighbors(rows, k or self.index.k)
        distances, indices = self._xp.asarray(distances), self._xp.asarray(indices)
        if self.index.weights == "distance":
            return self._exact_distances(rows, indices)
        return distances, indices

    def _exact_distances(self, rows: Any, indices: Any) -> tuple[Any, Any]:
        """The found neighbours' distances computed again from the rows, nearest first: distance
        weights divide by them, and a query on a training row must be at exactly zero."""
        xp = self._xp
        if self._rows is None:
            self._rows = xp.asarray(self.index.features)
        distances = neighbour_distances(rows, self._rows[indices], self.index.metric, self.index.p, xp)
        order = xp.argsort(distances, axis=1, kind="stable")
        return xp.take_along_axis(distances, order, axis=1), xp.take_along_axis(indices, order, axis=1)

    def combine(self, distances: Any, indices: Any) -> Any:
        """The voted class code (classification) or the (weighted) mean target (regression) of
        each row's neighbours, in the backend's arrays."""
        weights = neighbour_weights(distances, self.index.weights, self._xp)
        neighbour_targets = self._targets[indices]
        if self.index.task == "classification":
            return vote(neighbour_targets, len(self.index.classes), self._xp, weights)
        return neighbour_mean(neighbour_targets, self._xp, weights)

    def probabilities(self, distances: Any, indices: Any) -> Any:
        """``predict_proba`` of each row's neighbours: one column per class, in ``classes`` order."""
        weights = neighbour_weights(distances, self.index.weights, self._xp)
        return class_probabilities(self._targets[indices], len(self.index.classes), self._xp, weights)

    def labels_host(self, outcome: Any) -> np.ndarray:
        """What :meth:`combine` returned, as host predictions (class labels or values)."""
        if self.index.task == "classification":
            return self.index.classes[to_host_numpy(outcome)]
        return to_host_numpy(outcome)

    def predict(self, features: Any) -> Any:
        """A dataframe with ``prediction`` and ``distance`` (to the nearest neighbour).

        On the GPU a large batch is predicted in pieces; a piece that runs out of device memory
        is halved and retried.
        """
        if self.backend == "gpu":
            rows = self._xp.asarray(getattr(features, "values", features))
            df = get_df_pkg(self.backend)
            return predict_in_pieces(
                self._predict_rows, rows, lambda frames: df.concat(frames, ignore_index=True), self.max_rows
            )
        return self._predict_rows(features)

    def _predict_rows(self, features: Any) -> Any:
        distances, indices = self.kneighbors(features)
        outcome = self.combine(distances, indices)
        df = get_df_pkg(self.backend)
        labels = self.labels_host(outcome) if self.index.task == "classification" else outcome
        return df.DataFrame({"prediction": df.Series(labels), "distance": df.Series(distances[:, 0])})

    def predict_host(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and distances (to the nearest neighbour) as host NumPy arrays.

        The serving path. On the GPU it stays in CuPy from the neighbour search to the one copy
        of each result to the host, with no dataframe in between: every cuDF call lets go of the
        GIL and then waits to take it back, which a worker producing on another thread makes
        slow. Like :meth:`predict`, a large batch is predicted in pieces on the GPU.
        """
        predictions, distances, _ = self._host_in_pieces(features, with_probabilities=False)
        return predictions, distances

    def predict_proba_host(self, features: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`predict_host` and the class probabilities (one row per record, one column per class, float64)."""
        predictions, distances, probabilities = self._host_in_pieces(features, with_probabilities=True)
        assert probabilities is not None
        return predictions, distances, probabilities

    def _host_in_pieces(self, features: Any, with_probabilities: bool) -> tuple[Any, Any, Any]:
        def predict_rows(rows: Any) -> tuple[Any, Any, Any]:
            return self._predict_host_rows(rows, with_probabilities)

        if self.backend != "gpu":
            return predict_rows(features)
        rows = self._xp.asarray(getattr(features, "values", features))
        return predict_in_pieces(predict_rows, rows, _concat_columns, self.max_rows)

    def _predict_host_rows(self, rows: Any, with_probabilities: bool) -> tuple[Any, Any, Any]:
        distances, indices = self.kneighbors(rows)
        outcome = self.labels_host(self.combine(distances, indices))
        probabilities = to_host_numpy(self.probabilities(distances, indices)) if with_probabilities else None
        return outcome, to_host_numpy(distances[:, 0]), probabilities


def _concat_columns(pieces: list[tuple[Any, Any, Any]]) -> tuple[Any, Any, Any]:
    columns = list(zip(*pieces, strict=True))
    return tuple(None if column[0] is None else np.concatenate(column) for column in columns)  # type: ignore[return-value]


def build_predictor(
    index: KnnIndex, backend: Backend, max_rows: int = 65_536, search: NeighbourIndex | None = None
) -> KnnPredictor:
    return KnnPredictor(index, backend, max_rows, search)
