import io
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

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


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine, load_iris])
@pytest.mark.parametrize("weights", ["uniform", "distance"])
def test_a_scaled_model_is_a_standard_scaler_pipeline(backend: Backend, loader: Any, weights: str) -> None:
    features, labels = loader(return_X_y=True)
    rng = np.random.default_rng(7)
    queries = np.vstack([features + rng.normal(scale=0.2, size=features.shape) * features.std(axis=0), features[:30]])
    index = index_from_training_data(
        "classification", 5, "euclidean", features, labels, scale="standard", weights=weights
    )
    predicted, _, probabilities = build_predictor(KnnIndex.from_npz(index.to_npz()), backend).predict_proba_host(
        queries
    )
    reference = make_pipeline(StandardScaler(), KNeighborsClassifier(weights=weights)).fit(features, labels)
    assert np.mean(predicted == reference.predict(queries)) >= 0.999
    np.testing.assert_allclose(probabilities, reference.predict_proba(queries), rtol=0, atol=1e-6)


@pytest.mark.parametrize("metric", [("minkowski", 3.0, 1e-6), ("manhattan", 2.0, 1e-6), ("cosine", 2.0, 1e-5)])
def test_the_metrics_are_scikit_learns(backend: Backend, metric: tuple[str, float, float]) -> None:
    # the index is float32: a cosine distance of 1e-4 is known to about 1e-7, which its inverse weight shows
    name, p, tolerance = metric
    features, targets = load_diabetes(return_X_y=True)
    queries = features[:100] + np.random.default_rng(11).normal(scale=0.01, size=(100, features.shape[1]))
    index = index_from_training_data("regression", 6, name, features, targets, weights="distance", p=p)
    predicted, _ = build_predictor(index, backend).predict_host(queries)
    reference = KNeighborsRegressor(n_neighbors=6, weights="distance", metric=name, p=p).fit(features, targets)
    np.testing.assert_allclose(predicted, reference.predict(queries), rtol=tolerance)


def test_a_query_at_distance_zero_takes_the_label_of_the_rows_it_sits_on(backend: Backend) -> None:
    features = np.array([[0.0, 0.0], [0.0, 0.0], [1.0, 0.0], [1.0, 0.1], [1.1, 0.0]])
    labels = np.array(["a", "a", "b", "b", "b"])
    index = index_from_training_data("classification", 5, "manhattan", features, labels, weights="distance")
    predicted, distances, probabilities = build_predictor(index, backend).predict_proba_host(features[:1])
    assert predicted.tolist() == ["a"] and distances.tolist() == [0.0]
    np.testing.assert_array_equal(probabilities, [[1.0, 0.0]])


@pytest.mark.parametrize("labels", [["fraud", "ok"], [False, True], [-1.5, 2.0], [3, 7]], ids=str)
def test_labels_of_any_kind_load_without_pickle_and_keep_their_type(labels: list[Any]) -> None:
    features, codes = _blobs(200, 8)
    names = np.array(labels, dtype=object)[codes % 2]  # as pandas hands them over
    index = KnnIndex.from_npz(index_from_training_data("classification", 3, "euclidean", features, names).to_npz())
    assert index.classes.tolist() == sorted(labels)
    predicted, _ = build_predictor(index, "cpu").predict_host(features[:20])
    assert predicted.tolist() == names[:20].tolist()
    assert {type(value) for value in predicted.tolist()} == {type(labels[0])}


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_a_model_file_written_before_scaling_and_weights_predicts_as_it_did(backend: Backend, task: str) -> None:
    features, labels = _blobs(1000, 9)
    targets = (
        labels.astype(np.int32) if task == "classification" else (labels * 0.7 + features[:, 1]).astype(np.float32)
    )
    classes = np.arange(4) if task == "classification" else np.array([])
    buffer = io.BytesIO()  # the fields, and their types, of a model published before scaling and weights
    np.savez(buffer, task=np.array(task), k=np.array(5), metric=np.array("euclidean"), features=features,
             targets=targets, classes=classes)  # fmt: skip
    index = KnnIndex.from_npz(buffer.getvalue())
    assert index.weights == "uniform" and len(index.scale_mean) == 0
    queries, _ = _blobs(200, 10)
    predicted, distances = build_predictor(index, backend).predict_host(queries)
    if task == "classification":
        reference: Any = KNeighborsClassifier(n_neighbors=5, algorithm="brute").fit(features, targets)
        np.testing.assert_array_equal(predicted, reference.predict(queries))
    else:
        reference = KNeighborsRegressor(n_neighbors=5, algorithm="brute").fit(features, targets)
        np.testing.assert_allclose(predicted, reference.predict(queries), rtol=1e-6)
    np.testing.assert_allclose(distances, reference.kneighbors(queries, 1)[0][:, 0], rtol=1e-4, atol=1e-4)
