"""The model plugin on a real local Dask cluster (dask-cuda with ``-m gpu``): every worker, late joiners too."""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from model_store import ModelStore
from stream.backend import Backend
from stream.predict.cluster import close_client, start_client
from stream.predict.distributed import DaskPredictor, ModelLoadError
from stream.predict.index import stored_index
from stream.predict.model import MODEL_FILE, KnnIndex, build_predictor
from stream.predict.plugin import (
    FeatureShapeError,
    FrozenHeapPlugin,
    ModelPlugin,
    feature_rows,
    plugin_name,
    stored_predictor,
    warm_up_of,
)
from stream.settings import TrainSettings
from stream.train.job import train
from tests.helpers import blobs, write_history


def _publish(tmp_path: Path, store: str) -> str:
    data = write_history(tmp_path / "history.parquet", rows=2000)
    settings = TrainSettings(data=str(data), label="label", k="5", store=store, name="blobs", backend="cpu")
    return train(settings).version


def _holds_model(name: str, dask_worker: object = None) -> bool:
    plugin = dask_worker.plugins.get(name)  # type: ignore[attr-defined]
    return isinstance(plugin, ModelPlugin) and plugin.predictor is not None


def test_every_worker_holds_the_model_and_predictions_match(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    version = _publish(tmp_path, tmp_store)
    client = start_client(backend, None, 1)
    try:
        predictor = DaskPredictor(client, backend)
        predictor.load(ModelPlugin(tmp_store, "blobs", version, backend))
        predictor.activate(version)
        queries, _ = blobs(3000, seed=3)
        prediction = predictor.predict(queries.astype(np.float32))
        index = KnnIndex.from_npz(ModelStore(tmp_store).load(f"blobs:{version}").files[MODEL_FILE])
        expected, distances = build_predictor(index, "cpu").predict_host(queries)
        np.testing.assert_array_equal(prediction.frame["prediction"].to_numpy(), expected)
        np.testing.assert_allclose(prediction.frame["distance"].to_numpy(), distances, rtol=1e-4, atol=1e-4)
        assert prediction.version == version
        warmed = client.run(warm_up_of, plugin_name(version))
        assert [parts for parts, _ in warmed.values()] == [("json-float", "json-integer", "float32")]
        assert all(seconds > 0 for _, seconds in warmed.values())  # at load, before the first batch
        if backend == "cpu":  # a GPU host of one card cannot start a second dask-cuda worker
            client.cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
            deadline = time.monotonic() + 30
            while not all(client.run(_holds_model, plugin_name(version)).values()):
                assert time.monotonic() < deadline, "the late worker never loaded the model"
                time.sleep(0.1)
    finally:
        close_client(client)


@pytest.mark.parametrize("backend", ["cpu"])
def test_a_version_that_fails_to_verify_is_refused(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    version = _publish(tmp_path, tmp_store)
    model_file = Path(tmp_store) / "blobs" / "versions" / version / MODEL_FILE
    payload = bytearray(model_file.read_bytes())
    payload[100] ^= 0xFF
    model_file.write_bytes(bytes(payload))
    client = start_client(backend, None, 1)
    try:
        with pytest.raises(ModelLoadError, match="ChecksumMismatchError"):
            DaskPredictor(client, backend).load(ModelPlugin(tmp_store, "blobs", version, backend))
        assert plugin_name(version) not in client.run(lambda dask_worker: list(dask_worker.plugins)).popitem()[1]
    finally:
        close_client(client)


def _heap_state() -> tuple[int, bool]:
    return gc.get_freeze_count(), "sklearn.neighbors" in sys.modules or "cuml.neighbors" in sys.modules


def test_every_worker_freezes_its_start_up_heap_late_joiners_too_and_only_once(backend: Backend) -> None:
    client = start_client(backend, None, 1)
    try:
        client.register_plugin(FrozenHeapPlugin(backend))
        if backend == "cpu":  # a GPU host of one card cannot start a second dask-cuda worker
            client.cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
        states = client.run(_heap_state)
        assert states and all(frozen > 1000 and imported for frozen, imported in states.values()), states
        client.register_plugin(FrozenHeapPlugin(backend))  # another serving worker starts: nothing happens
        again = client.run(_heap_state)
        assert all(again[address][0] <= frozen for address, (frozen, _) in states.items()), (states, again)
    finally:
        close_client(client)


def _model_collectable(version: str, dask_worker: Any = None) -> bool:
    predictor = dask_worker.plugins[plugin_name(version)].predictor
    return any(candidate is predictor for candidate in gc.get_objects())  # frozen objects are not listed


@pytest.mark.parametrize("backend", ["cpu"])
def test_a_worker_that_holds_a_model_already_is_not_frozen(tmp_path: Path, tmp_store: str, backend: Backend) -> None:
    version = _publish(tmp_path, tmp_store)
    client = start_client(backend, None, 1)
    try:
        DaskPredictor(client, backend).load(ModelPlugin(tmp_store, "blobs", version, backend))
        client.register_plugin(FrozenHeapPlugin(backend))  # came late to a cluster serving a model
        assert list(client.run(_model_collectable, version).values()) == [True]
        assert [frozen for frozen, _ in client.run(_heap_state).values()] == [0]
    finally:
        close_client(client)


def test_a_matrix_of_another_feature_count_is_refused_by_name() -> None:
    rows = np.zeros((3, 4), dtype=np.float32)
    assert feature_rows(rows, 4) is rows
    with pytest.raises(FeatureShapeError, match=r"shape \(3, 4\) for a model of 5 features"):
        feature_rows(rows, 5)
    with pytest.raises(FeatureShapeError, match=r"shape \(4,\)"):
        feature_rows(np.zeros(4, dtype=np.float32), 4)


@pytest.mark.parametrize("kind", ["ivf-flat", "hnsw"])
def test_a_model_with_an_index_is_loaded_on_every_worker_reloaded_and_shadowed(
    kind: str, tmp_path: Path, tmp_store: str, backend: Backend
) -> None:
    """Its stored index is what each worker searches (late joiners too); a hot switch from an exact
    version to it, and a shadow of the exact one beside it, work as with exact models."""
    data = write_history(tmp_path / "history.parquet", rows=6000)
    values = {"data": str(data), "label": "label", "k": "5", "store": tmp_store, "name": "blobs", "backend": "cpu"}
    exact_version = train(TrainSettings(**values)).version  # type: ignore[arg-type]
    indexed = train(TrainSettings(**values, index=kind))  # type: ignore[arg-type]
    loaded = ModelStore(tmp_store).load(f"blobs:{indexed.version}")
    model = KnnIndex.from_npz(loaded.files[MODEL_FILE])
    search = stored_index(indexed.extra["index"], loaded.files, model.features, model.metric, "cpu")
    queries = blobs(2000, seed=3)[0].astype(np.float32)
    expected, _ = build_predictor(model, "cpu", search=search).predict_host(queries)
    exact, _ = build_predictor(model, "cpu").predict_host(queries)
    client = start_client(backend, None, 1)
    try:
        predictor = DaskPredictor(client, backend)
        predictor.load(ModelPlugin(tmp_store, "blobs", exact_version, backend))
        predictor.activate(exact_version)
        np.testing.assert_array_equal(predictor.predict(queries).frame["prediction"].to_numpy(), exact)
        predictor.load(ModelPlugin(tmp_store, "blobs", indexed.version, backend))
        predictor.set_shadow(exact_version)  # the exact version stays loaded, as the shadow
        predictor.activate(indexed.version)
        prediction = predictor.predict(queries)
        assert prediction.version == indexed.version and prediction.shadow_version == exact_version
        served = prediction.frame["prediction"].to_numpy()
        if backend == "cpu":  # the same FAISS file searched: the same neighbours
            np.testing.assert_array_equal(served, expected)
        assert np.mean(served == exact) >= 0.98
        np.testing.assert_array_equal(prediction.shadow, exact)
        if backend == "cpu":
            client.cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
            deadline = time.monotonic() + 30
            while not all(client.run(_holds_model, plugin_name(indexed.version)).values()):
                assert time.monotonic() < deadline, "the late worker never loaded the model"
                time.sleep(0.1)
            np.testing.assert_array_equal(predictor.predict(queries).frame["prediction"].to_numpy(), expected)
    finally:
        close_client(client)


def test_a_stored_minkowski_model_is_served_with_its_power(tmp_path: Path, tmp_store: str) -> None:
    """The version as the plugin loads it searches with the trained ``p``, as scikit-learn does."""
    from sklearn.neighbors import KNeighborsClassifier

    data = write_history(tmp_path / "history.parquet", rows=600)
    settings = TrainSettings(
        data=str(data), label="label", k="7", metric="minkowski", p=3.0, store=tmp_store, name="mink", backend="cpu"
    )
    manifest = train(settings)
    loaded = ModelStore(tmp_store).load(f"mink:{manifest.version}")
    predictor = stored_predictor(loaded.manifest, loaded.files, KnnIndex.from_npz(loaded.files[MODEL_FILE]), "cpu")
    frame = pd.read_parquet(data)
    features, labels = frame.drop(columns="label").to_numpy(), frame["label"].to_numpy()
    queries = blobs(200, seed=9)[0]
    distances, _ = predictor.kneighbors(queries)
    reference = KNeighborsClassifier(n_neighbors=7, p=3.0).fit(features, labels)
    expected, _ = reference.kneighbors(queries)
    np.testing.assert_allclose(distances, expected, rtol=1e-4)
    np.testing.assert_array_equal(predictor.predict_host(queries)[0], reference.predict(queries))
