"""The training job on real files and a real local Dask cluster (dask-cuda with ``-m gpu``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.neighbors import KNeighborsClassifier

from model_store import ModelStore
from stream.backend import Backend
from stream.errors import TrainingError
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor
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
    assert 2800 < manifest.training_rows < 3500  # about 80 % of the rows, the rest held out
    assert set(manifest.files) == {MODEL_FILE}

    index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{manifest.version}").files[MODEL_FILE])
    queries, _ = blobs(500, seed=42)
    predicted, _ = build_predictor(index, "cpu").predict_host(queries)
    reference = KNeighborsClassifier(n_neighbors=7, algorithm="brute").fit(index.features, index.classes[index.targets])
    np.testing.assert_array_equal(predicted, reference.predict(queries.astype(np.float32)))


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
