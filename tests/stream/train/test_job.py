"""The training job on real files and a real local Dask cluster (dask-cuda with ``-m gpu``)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, load_wine
from sklearn.metrics import accuracy_score, r2_score
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from model_store import ModelStore
from stream.backend import Backend, get_dd_pkg
from stream.errors import ConfigurationError, TrainingError
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor, index_from_training_data
from stream.settings import TrainSettings
from stream.train.job import train
from tests.helpers import blobs, write_history


def _settings(data: Path | str, store: str, backend: Backend, **overrides: object) -> TrainSettings:
    values: dict[str, object] = {
        "data": str(data), "label": "label", "store": store, "name": "blobs", "backend": backend, "dask_workers": 2,
    }  # fmt: skip
    return TrainSettings(**(values | overrides))


def test_train_publishes_a_model_that_predicts_like_scikit_learn(
    tmp_path: Path, tmp_store: str, backend: Backend
) -> None:
    data = write_history(tmp_path / "history.parquet", rows=4000)
    manifest = train(_settings(data, tmp_store, backend, k="7", alias="production"))

    assert ModelStore(tmp_store).resolve("blobs@production").version == manifest.version
    assert manifest.task == "classification" and manifest.k == 7 and manifest.backend == backend
    assert manifest.feature_names == tuple(f"f{i}" for i in range(6)) and manifest.n_features == 6
    assert manifest.classes == (0, 1, 2, 3)
    assert 0.8 < manifest.holdout_metrics["accuracy"] <= 1.0
    assert manifest.training_rows == 4000  # every row: the holdout is scored, then fitted on too
    assert set(manifest.files) == {MODEL_FILE}

    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{manifest.version}").files[MODEL_FILE])
    queries, _ = blobs(500, seed=42)
    predicted, _ = build_predictor(index, "cpu").predict_host(queries)
    rows = pd.read_parquet(data)
    reference = KNeighborsClassifier(n_neighbors=7).fit(rows.drop(columns="label").to_numpy(), rows["label"])
    np.testing.assert_array_equal(predicted, reference.predict(queries))


def test_csv_glob_and_k_auto(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    for part in range(3):
        write_history(tmp_path / f"part-{part}.csv", rows=1500, seed=part, fmt="csv")
    manifest = train(_settings(tmp_path / "part-*.csv", tmp_store, backend, k="auto", k_candidates="1,5,15"))
    scores = manifest.extra["validation_by_k"]
    assert set(scores) == {"1", "5", "15"}
    best = max(scores.values())
    assert scores[str(manifest.k)] == best
    assert manifest.k == min(int(k) for k, score in scores.items() if score == best)
    assert manifest.training_rows > 3000


def test_regression_reports_r2(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    features, labels = blobs(3000, seed=5)
    frame = pd.DataFrame(features, columns=[f"x{i}" for i in range(features.shape[1])])
    frame["price"] = labels * 10.0 + features[:, 0]
    frame["comment"] = "not a feature"
    frame.to_parquet(tmp_path / "prices.parquet")
    manifest = train(
        _settings(tmp_path / "prices.parquet", tmp_store, backend, label="price", task="regression", k="5")
    )
    assert manifest.task == "regression" and manifest.classes == ()
    assert manifest.feature_names == tuple(f"x{i}" for i in range(features.shape[1]))
    assert 0.8 < manifest.holdout_metrics["r2"] <= 1.0


@pytest.mark.parametrize("backend", ["cpu"])
def test_unknown_columns_are_refused_with_their_names(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    data = write_history(tmp_path / "history.parquet", rows=200)
    with pytest.raises(TrainingError, match="label column 'nope' not in the data"):
        train(_settings(data, tmp_store, backend, label="nope"))
    with pytest.raises(TrainingError, match="missing_feature"):
        train(_settings(data, tmp_store, backend, features="f0,missing_feature"))


def _frame_of(dataset: Any) -> pd.DataFrame:
    frame = pd.DataFrame(dataset.data, columns=[f"x{i}" for i in range(dataset.data.shape[1])])
    frame["target"] = dataset.target
    return frame


def _query_rows(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """The rows moved by a fraction of each column's spread: near the training rows, never on them."""
    features = frame.drop(columns="target").to_numpy()
    noise = np.random.default_rng(seed).normal(scale=0.3, size=features.shape)
    return features + noise * features.std(axis=0)


@pytest.mark.parametrize("loader", [load_breast_cancer, load_wine, load_iris])
def test_a_scaled_distance_weighted_classifier_is_scikit_learns_fitted_on_every_row(
    tmp_path: Path, tmp_store: str, backend: Backend, loader: Callable[[], Any]
) -> None:
    frame = _frame_of(loader())
    frame.to_parquet(tmp_path / "data.parquet")
    manifest = train(
        _settings(
            tmp_path / "data.parquet", tmp_store, backend, label="target", k="7", scale="standard",
            weights="distance", holdout_fraction=0,
        )
    )  # fmt: skip
    assert manifest.training_rows == len(frame) and manifest.holdout_metrics == {}
    assert manifest.extra["holdout"] == "none: --holdout-fraction 0" and manifest.extra["scale"] == "standard"
    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{manifest.version}").files[MODEL_FILE])
    queries = _query_rows(frame, seed=1)
    predicted, _, probabilities = build_predictor(index, backend).predict_proba_host(queries)

    reference = make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=7, weights="distance"))
    reference.fit(frame.drop(columns="target").to_numpy(), frame["target"])
    assert np.mean(predicted == reference.predict(queries)) >= 0.999
    np.testing.assert_allclose(probabilities, reference.predict_proba(queries), rtol=0, atol=1e-6)


def test_a_scaled_distance_weighted_regressor_is_scikit_learns_fitted_on_every_row(
    tmp_path: Path, tmp_store: str, backend: Backend
) -> None:
    frame = _frame_of(load_diabetes())
    frame.to_parquet(tmp_path / "data.parquet")
    settings = _settings(
        tmp_path / "data.parquet", tmp_store, backend, label="target", task="regression", k="9",
        scale="standard", weights="distance", holdout_fraction=0,
    )  # fmt: skip
    manifest = train(settings)
    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{manifest.version}").files[MODEL_FILE])
    queries = _query_rows(frame, seed=2)
    predicted, _ = build_predictor(index, backend).predict_host(queries)
    reference = make_pipeline(StandardScaler(), KNeighborsRegressor(n_neighbors=9, weights="distance"))
    reference.fit(frame.drop(columns="target").to_numpy(), frame["target"])
    assert predicted.dtype == np.float64
    np.testing.assert_allclose(predicted, reference.predict(queries), rtol=1e-6)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_the_holdout_score_is_the_serving_codes_score_of_a_model_of_the_training_part(
    tmp_path: Path, tmp_store: str, backend: Backend, task: str
) -> None:
    frame = _frame_of(load_wine() if task == "classification" else load_diabetes())
    frame.to_parquet(tmp_path / "data.parquet")
    settings = _settings(
        tmp_path / "data.parquet", tmp_store, backend, label="target", task=task, k="5", scale="standard",
        weights="distance", metric="minkowski", p=3,
    )  # fmt: skip
    manifest = train(settings)
    assert manifest.training_rows == len(frame)

    table = get_dd_pkg(backend).read_parquet(str(tmp_path / "data.parquet")).dropna()
    train_part, holdout_part = (
        _on_host(part.compute()) for part in table.random_split([0.8, 0.2], random_state=settings.seed)
    )
    features = [f"x{i}" for i in range(frame.shape[1] - 1)]
    index = index_from_training_data(
        task, 5, "minkowski", train_part[features].to_numpy(), train_part["target"].to_numpy(),
        scale="standard", weights="distance", p=3,
    )  # fmt: skip
    predicted, _ = build_predictor(index, backend).predict_host(holdout_part[features].to_numpy())
    truth = holdout_part["target"].to_numpy()
    if task == "classification":
        served_score = accuracy_score(truth, predicted)
        estimator: Any = KNeighborsClassifier(n_neighbors=5, weights="distance", p=3)
    else:
        served_score = r2_score(truth, predicted)
        estimator = KNeighborsRegressor(n_neighbors=5, weights="distance", p=3)
    name = "accuracy" if task == "classification" else "r2"
    assert manifest.holdout_metrics[name] == pytest.approx(served_score, rel=1e-12, abs=1e-12)
    reference = make_pipeline(StandardScaler(), estimator).fit(train_part[features], train_part["target"])
    assert manifest.holdout_metrics[name] == pytest.approx(
        reference.score(holdout_part[features], holdout_part["target"]), rel=1e-6
    )


def _on_host(frame: Any) -> pd.DataFrame:
    return frame.to_pandas() if hasattr(frame, "to_pandas") else frame


@pytest.mark.parametrize("labels", [["fraud", "ok"], [True, False], [0.5, 2.5]], ids=["str", "bool", "float"])
def test_labels_of_any_kind_are_published_and_predicted_with_their_type(
    tmp_path: Path, tmp_store: str, backend: Backend, labels: list[Any]
) -> None:
    features, codes = blobs(600, seed=3, classes=2)
    frame = pd.DataFrame(features, columns=[f"f{i}" for i in range(features.shape[1])])
    frame["label"] = np.array(labels)[codes]
    frame.to_parquet(tmp_path / "labels.parquet")
    manifest = train(_settings(tmp_path / "labels.parquet", tmp_store, backend, k="5", alias="production"))
    assert manifest.classes == tuple(sorted(labels))
    assert all(type(label) is type(labels[0]) for label in manifest.classes)
    index = KnnIndex.from_npz(ModelStore(tmp_store).load("blobs@production").files[MODEL_FILE])
    predicted, _ = build_predictor(index, backend).predict_host(features[:50])
    reference = KNeighborsClassifier(n_neighbors=5).fit(features, codes)  # floats are no classes to it
    assert [type(value.item()) for value in predicted] == [type(labels[0])] * 50
    assert predicted.tolist() == np.array(labels)[reference.predict(features[:50])].tolist()


@pytest.mark.parametrize("backend", ["cpu"])
def test_what_cannot_be_served_is_refused_in_one_line_and_never_published(
    tmp_path: Path, tmp_store: str, backend: Backend
) -> None:
    data = write_history(tmp_path / "small.parquet", rows=40)
    with pytest.raises(TrainingError, match=r"^--k 500 is more than the \d+ training rows of the training part"):
        train(_settings(data, tmp_store, backend, k="500"))
    with pytest.raises(TrainingError, match=r"^the holdout split is empty: raise --holdout-fraction"):
        train(_settings(data, tmp_store, backend, holdout_fraction=0.001))
    with pytest.raises(TrainingError, match=r"^the validation split of --k auto is empty"):
        train(_settings(write_history(tmp_path / "tiny.parquet", rows=4), tmp_store, backend, k="auto"))
    with pytest.raises(ConfigurationError, match=r"^no file matches '.*nothere\.parquet'$"):
        train(_settings(tmp_path / "nothere.parquet", tmp_store, backend))
    with pytest.raises(ConfigurationError, match=r"^no file matches '.*part-\*\.csv'$"):
        train(_settings(tmp_path / "part-*.csv", tmp_store, backend))
    assert not ModelStore(tmp_store).list_models()


@pytest.mark.parametrize("backend", ["cpu"])
def test_k_auto_leaves_out_candidates_larger_than_its_fit_rows(
    tmp_path: Path, tmp_store: str, backend: Backend
) -> None:
    data = write_history(tmp_path / "small.parquet", rows=60)
    manifest = train(_settings(data, tmp_store, backend, k="auto", k_candidates="1,3,500", holdout_fraction=0))
    assert set(manifest.extra["validation_by_k"]) == {"1", "3"} and manifest.training_rows == 60
