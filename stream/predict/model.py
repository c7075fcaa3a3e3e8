"""The served KNN model: a brute-force index stored as plain arrays, never as code.

A :class:`KnnIndex` is what the model store holds (``model.npz``: the training matrix, the
labels and the parameters). :func:`build_predictor` turns it into a :class:`KnnPredictor` for
one backend, so a model trained on a GPU serves on a CPU worker and the other way round.

Predictions are computed from one neighbour query on both backends, with the same vote:
the class with most of the k neighbours wins, and a tie goes to the smallest class (the
order of ``classes``), as in scikit-learn.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.backend import Backend, get_array_pkg, get_df_pkg, to_host_numpy
from stream.errors import KnnStreamError
from stream.predict.index import NeighbourIndex, exact_index
from stream.predict.memory import predict_in_pieces

MODEL_FILE = "model.npz"
FORMAT = "npz"


class ModelFormatError(KnnStreamError):
    """A stored model file is not a knnstream KNN index."""


@dataclass(frozen=True)
class KnnIndex:
    """Everything a brute-force KNN needs: training rows, their targets, the parameters."""

    task: str
    k: int
    metric: str
    features: np.ndarray  # (rows, n_features) float32
    targets: np.ndarray  # class codes (int32) for classification, values (float32) for regression
    classes: np.ndarray  # class labels in code order; empty for regression

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
        )
        return buffer.getvalue()

    @classmethod
    def from_npz(cls, payload: bytes) -> KnnIndex:
        """Read an index; object arrays are refused, so loading never runs stored code."""
        try:
            with np.load(io.BytesIO(payload), allow_pickle=False) as arrays:
                return cls(
                    task=str(arrays["task"]),
                    k=int(arrays["k"]),
                    metric=str(arrays["metric"]),
                    features=arrays["features"],
                    targets=arrays["targets"],
                    classes=arrays["classes"],
                )
        except (ValueError, KeyError, OSError) as exc:
            raise ModelFormatError(f"not a knnstream model file: {exc}") from exc


def index_from_training_data(task: str, k: int, metric: str, features: np.ndarray, labels: np.ndarray) -> KnnIndex:
    """Build the index from host arrays; class labels are encoded in sorted order."""
    matrix = np.ascontiguousarray(features, dtype=np.float32)
    if task == "classification":
        classes, codes = np.unique(labels, return_inverse=True)
        return KnnIndex(task, k, metric, matrix, codes.astype(np.int32), classes)
    return KnnIndex(task, k, metric, matrix, np.asarray(labels, dtype=np.float32), np.array([]))


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
        self._search = search or exact_index(index.features, index.metric, backend)

    @property
    def array_module(self) -> Any:
        """``cupy`` or ``numpy``: where this predictor's arrays live."""
        return self._xp

    def kneighbors(self, features: Any, k: int | None = None) -> tuple[Any, Any]:
        """Distances and row numbers of the k nearest training rows, nearest first."""
        rows = self._xp.asarray(features, dtype=self._xp.float32)
        distances, indices = self._search.kneighbors(rows, k or self.index.k)
        return self._xp.asarray(distances), self._xp.asarray(indices)

    def predict(self, features: Any) -> Any:
        """A dataframe with ``prediction`` and ``distance`` (to the nearest neighbour).

        On the GPU a large batch is predicted in pieces; a piece that runs out of device memory
        is halved and retried.
        """
        if self.backend == "gpu":
            rows = self._xp.asarray(getattr(features, "values", features), dtype=self._xp.float32)
            df = get_df_pkg(self.backend)
            return predict_in_pieces(
                self._predict_rows, rows, lambda frames: df.concat(frames, ignore_index=True), self.max_rows
            )
        return self._predict_rows(features)

    def _predict_rows(self, features: Any) -> Any:
        outcome, nearest = self._search_and_vote(features)
        df = get_df_pkg(self.backend)
        if self.index.task == "classification":
            labels = df.Series(self.index.classes).take(outcome).reset_index(drop=True)
        else:
            labels = df.Series(outcome)
        return df.DataFrame({"prediction": labels, "distance": df.Series(nearest)})

    def _search_and_vote(self, features: Any) -> tuple[Any, Any]:
        """Per row, in the backend's arrays: the voted class code (classification) or the mean
        target (regression), and the distance to the nearest neighbour."""
        distances, indices = self.kneighbors(features)
        neighbour_targets = self._targets[indices]
        if self.index.task == "classification":
            return vote(neighbour_targets, len(self.index.classes), self._xp), distances[:, 0]
        return neighbour_targets.mean(axis=1), distances[:, 0]

    def predict_host(self, features: Any) -> tuple[np.ndarray, np.ndarray]:
        """Predictions and distances (to the nearest neighbour) as host NumPy arrays.

        The serving path. On the GPU it stays in CuPy from the neighbour search to the one copy
        of each result to the host, with no dataframe in between: every cuDF call lets go of the
        GIL and then waits to take it back, which a worker producing on another thread makes
        slow. Like :meth:`predict`, a large batch is predicted in pieces on the GPU.
        """
        if self.backend != "gpu":
            return self._predict_host_rows(np.asarray(features, dtype=np.float32))
        rows = self._xp.asarray(getattr(features, "values", features), dtype=self._xp.float32)
        return predict_in_pieces(self._predict_host_rows, rows, _concat_pairs, self.max_rows)

    def _predict_host_rows(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        outcome, nearest = self._search_and_vote(rows)
        if self.index.task == "classification":
            return self.index.classes[to_host_numpy(outcome)], to_host_numpy(nearest)
        return to_host_numpy(outcome), to_host_numpy(nearest)


def vote(neighbour_codes: Any, n_classes: int, xp: Any) -> Any:
    """Majority class per row; ties go to the smallest class code."""
    rows = neighbour_codes.shape[0]
    counts = xp.zeros((rows, n_classes), dtype=xp.int32)
    row_numbers = xp.arange(rows)
    for column in range(neighbour_codes.shape[1]):
        counts[row_numbers, neighbour_codes[:, column]] += 1
    return counts.argmax(axis=1)


def _concat_pairs(pieces: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([first for first, _ in pieces]), np.concatenate([second for _, second in pieces])


def build_predictor(
    index: KnnIndex, backend: Backend, max_rows: int = 65_536, search: NeighbourIndex | None = None
) -> KnnPredictor:
    return KnnPredictor(index, backend, max_rows, search)
