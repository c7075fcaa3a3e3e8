import numpy as np
import pytest
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from stream.backend import Backend
from stream.predict.model import KnnIndex, ModelFormatError, build_predictor, index_from_training_data, vote


def _blobs(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 4, rows)
    centres = rng.uniform(-5, 5, size=(4, 6))
    return (centres[labels] + rng.normal(size=(rows, 6))).astype(np.float32), labels


def test_classification_equals_scikit_learn(backend: Backend) -> None:
    features, labels = _blobs(2000, 0)
    queries, _ = _blobs(300, 1)
    names = np.array(["ant", "bee", "cat", "dog"])[labels]
    predictor = build_predictor(index_from_training_data("classification", 5, "euclidean", features, names), backend)
    predicted, distances = predictor.predict_host(queries)
    reference = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(features, names)
    np.testing.assert_array_equal(predicted, reference.predict(queries))
    nearest = reference.kneighbors(queries, n_neighbors=1)[0][:, 0]
    np.testing.assert_allclose(distances, nearest, rtol=1e-4, atol=1e-4)


def test_regression_equals_scikit_learn(backend: Backend) -> None:
    features, labels = _blobs(2000, 2)
    targets = labels * 1.5 + features[:, 0]
    queries, _ = _blobs(300, 3)
    predictor = build_predictor(index_from_training_data("regression", 7, "euclidean", features, targets), backend)
    predicted, _ = predictor.predict_host(queries)
    reference = KNeighborsRegressor(n_neighbors=7, algorithm="brute").fit(features, targets)
    np.testing.assert_allclose(predicted, reference.predict(queries), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_serving_path_equals_the_dataframe_path_on_the_gpu_also_in_pieces(backend: Backend, task: str) -> None:
    features, labels = _blobs(2000, 4)
    targets = np.array(["ant", "bee", "cat", "dog"])[labels] if task == "classification" else labels * 0.5
    index = index_from_training_data(task, 5, "euclidean", features, targets)
    queries, _ = _blobs(1000, 5)
    frame = build_predictor(index, backend).predict(queries)
    for max_rows in (65_536, 300) if backend == "gpu" else (65_536,):  # one piece, and four
        predicted, distances = build_predictor(index, backend, max_rows).predict_host(queries)
        assert isinstance(predicted, np.ndarray) and isinstance(distances, np.ndarray) and len(predicted) == 1000
        np.testing.assert_array_equal(predicted, _on_host(frame["prediction"]))
        np.testing.assert_allclose(distances, _on_host(frame["distance"]), rtol=1e-6)


def _on_host(column: object) -> np.ndarray:
    to_pandas = getattr(column, "to_pandas", None)
    return np.asarray((to_pandas() if callable(to_pandas) else column).to_numpy())  # type: ignore[attr-defined]


def test_vote_breaks_ties_towards_the_smallest_class() -> None:
    codes = np.array([[2, 1, 2, 1], [0, 3, 3, 0], [1, 1, 1, 2]])
    np.testing.assert_array_equal(vote(codes, 4, np), [1, 0, 1])


def test_npz_round_trip_keeps_everything() -> None:
    features, labels = _blobs(50, 4)
    index = index_from_training_data("classification", 3, "manhattan", features, labels)
    again = KnnIndex.from_npz(index.to_npz())
    assert (again.task, again.k, again.metric) == ("classification", 3, "manhattan")
    np.testing.assert_array_equal(again.features, index.features)
    np.testing.assert_array_equal(again.targets, index.targets)
    np.testing.assert_array_equal(again.classes, index.classes)


def test_a_file_with_pickled_objects_is_refused() -> None:
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        task=np.array("classification"),
        k=np.array(3),
        metric=np.array("euclidean"),
        features=np.zeros((2, 2)),
        targets=np.array([object(), object()], dtype=object),
        classes=np.array([]),
    )
    with pytest.raises(ModelFormatError):
        KnnIndex.from_npz(buffer.getvalue())
