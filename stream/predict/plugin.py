"""Per-worker model loading as a Dask ``WorkerPlugin``.

The scheduler keeps registered plugins and runs ``setup`` on every worker, including workers
that join later or replace a dead one, so each worker always holds the model before a batch
reaches it. Only the store location and the version travel; each worker reads the files and
verifies their checksums itself. Each version is a plugin of its own name, so a new version
loads beside the one serving, and the switch between them is a matter of which name a batch's
tasks ask for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from distributed import WorkerPlugin, get_worker

from model_store import Manifest, ModelStore
from stream.backend import Backend
from stream.errors import KnnStreamError
from stream.heap import freeze_startup_heap
from stream.predict.index import index_file_bytes, stored_index
from stream.predict.memory import check_fits, free_device_bytes
from stream.predict.model import MODEL_FILE, KnnIndex, KnnPredictor, build_predictor
from stream.predict.warm import WarmUp, warm_serving_path
from stream.records.encode import probability_objects

PLUGIN_PREFIX = "knnstream-model-"
HEAP_PLUGIN_NAME = "knnstream-frozen-heap"
WARM_UP_ROWS = 1_000
# The libraries a model of each backend loads: imported before the start-up heap is frozen.
BACKEND_MODULES: dict[Backend, tuple[str, ...]] = {
    "cpu": ("pandas", "sklearn.neighbors"),
    "gpu": ("cudf", "cupy", "cuml.neighbors"),
}
log = logging.getLogger(__name__)
# A worker runs several tasks at once (a batch is predicted while the one before it is produced),
# but predicts one at a time: a cuML model is not safe to call from two threads.
_ONE_PREDICTION_AT_A_TIME = threading.Lock()


class FeatureShapeError(KnnStreamError):
    """A batch's feature matrix does not have the model's number of features."""


def plugin_name(version: str) -> str:
    return PLUGIN_PREFIX + version


class ModelPlugin(WorkerPlugin):
    """Loads one model version from the store onto a Dask worker."""

    def __init__(
        self, store_root: str, model_name: str, version: str, backend: Backend, max_batch_rows: int = 10_000
    ) -> None:
        self.store_root = store_root
        self.model_name = model_name
        self.version = version
        self.backend = backend
        self.max_batch_rows = max_batch_rows
        self.name = plugin_name(version)
        self.predictor: KnnPredictor | None = None
        self.feature_names: list[str] = []
        self.warmed_up: WarmUp | None = None  # the serving path run once at setup (stream.predict.warm)

    def made_from(self) -> dict[str, Any]:
        """What the plugin loads (:mod:`stream.predict.shared` registers it once per cluster)."""
        return {
            "store": self.store_root,
            "model": f"{self.model_name}:{self.version}",
            "backend": self.backend,
            "max_batch_rows": self.max_batch_rows,
        }

    def setup(self, worker: Any) -> None:
        loaded = ModelStore(self.store_root).load(f"{self.model_name}:{self.version}")
        index = KnnIndex.from_npz(loaded.files[MODEL_FILE])
        self.feature_names = list(loaded.manifest.feature_names)
        if self.backend == "gpu":
            rows, n_features = index.features.shape
            index_bytes = index_file_bytes(loaded.files)
            check_fits(rows, n_features, self.max_batch_rows, index.k, free_device_bytes(), index_bytes)
        predictor = stored_predictor(loaded.manifest, loaded.files, index, self.backend)
        if self.backend == "gpu":
            warm_up(predictor)
        self.warmed_up = warm_serving_path(predictor, self.backend, _ONE_PREDICTION_AT_A_TIME)
        self.predictor = predictor  # served only once warmed up
        log.info(
            "model %s:%s loaded on worker %s (%d rows, index %s, backend %s); serving path (%s) warmed up in %.2f s",
            self.model_name,
            self.version,
            worker.address,
            index.features.shape[0],
            predictor.search_kind,
            self.backend,
            ", ".join(self.warmed_up.parts),
            self.warmed_up.seconds,
        )

    def teardown(self, worker: Any) -> None:
        self.predictor = None


def stored_predictor(manifest: Manifest, files: Mapping[str, bytes], index: KnnIndex, backend: Backend) -> KnnPredictor:
    """The predictor of a stored version: its model and the index its manifest records, as served."""
    search = stored_index(manifest.extra.get("index"), files, index.features, index.metric, backend, index.p)
    return build_predictor(index, backend, search=search)


def warm_up(predictor: KnnPredictor, rows: int = WARM_UP_ROWS) -> None:
    """Predict a few rows once, so the first batch served does not pay the one-time costs
    (CUDA kernels compiled, the GPU libraries' handles and workspaces created)."""
    with _ONE_PREDICTION_AT_A_TIME:  # a new version loads while the one serving predicts
        predictor.predict_host(np.zeros((rows, predictor.index.n_features), dtype=np.float32))


class FrozenHeapPlugin(WorkerPlugin):
    """Freezes a Dask worker's start-up heap (:mod:`stream.heap`), but never a model.

    A model must stay collectable: a replaced one's objects, and the device memory they hold,
    have to go. The serving worker registers this plugin before any model plugin, so on a new
    scheduler it is set up first on every worker, late joiners too (the scheduler keeps its
    plugins in the order they were first registered). A worker that holds a model already (the
    plugin came late to an existing cluster) is left as it is, and registering the plugin again
    (another serving worker, a restart) does nothing (``idempotent``).
    """

    name = HEAP_PLUGIN_NAME
    idempotent = True

    def __init__(self, backend: Backend) -> None:
        self.backend = backend

    def setup(self, worker: Any) -> None:
        if any(isinstance(plugin, ModelPlugin) and plugin.predictor for plugin in worker.plugins.values()):
            log.warning("worker %s holds a model already: its heap is not frozen", worker.address)
            return
        freeze_startup_heap(BACKEND_MODULES[self.backend])


def worker_plugin(version: str, worker: Any = None) -> ModelPlugin:
    """The loaded plugin of ``version`` on ``worker`` (default: the worker running this task)."""
    plugin = (worker or get_worker()).plugins.get(plugin_name(version))
    if not isinstance(plugin, ModelPlugin) or plugin.predictor is None:
        raise RuntimeError(f"this Dask worker holds no knnstream model of version {version}")
    return plugin


def warm_up_of(name: str, dask_worker: Any = None) -> tuple[tuple[str, ...], float]:
    """``client.run``: the parts the model plugin ``name`` warmed up on this worker, and the seconds
    it took (none and 0 on a worker that has not set it up)."""
    plugin = (dask_worker or get_worker()).plugins.get(name)
    warmed = plugin.warmed_up if isinstance(plugin, ModelPlugin) else None
    return (warmed.parts, warmed.seconds) if warmed is not None else ((), 0.0)


def worker_predictor(version: str, worker: Any = None) -> KnnPredictor:
    """The predictor of ``version`` held by ``worker`` (default: the worker running this task)."""
    predictor = worker_plugin(version, worker).predictor
    assert predictor is not None
    return predictor


def predict_on_worker(
    features: Any, version: str, shadow_version: str | None = None, probabilities: bool = False
) -> tuple[Any, Any]:
    """Dask task: predict one partition of rows with ``version`` (and ``shadow_version``).

    ``features`` are host rows sent by the driver (only host arrays cross the network), or a
    matrix parsed on this worker (:mod:`stream.predict.tasks`, a CuPy matrix on a GPU worker).
    Returns a pandas frame of ``prediction`` and ``distance`` (with ``probabilities``, each
    record's JSON object of class probabilities, when asked of a classifier), and the shadow's
    predictions as an array (or ``None``).
    """
    rows = feature_rows(features, len(worker_plugin(version).feature_names))
    predictor = worker_predictor(version)
    with_probabilities = probabilities and predictor.index.task == "classification"
    columns: dict[str, Any] = {}
    with _ONE_PREDICTION_AT_A_TIME:
        if with_probabilities:
            predictions, distances, shares = predictor.predict_proba_host(rows)
            columns["probabilities"] = probability_objects(predictor.index.classes, shares).to_numpy(
                zero_copy_only=False
            )
        else:
            predictions, distances = predictor.predict_host(rows)
        shadow = None
        if shadow_version is not None:
            shadow, _ = worker_predictor(shadow_version).predict_host(rows)
    return pd.DataFrame({"prediction": predictions, "distance": distances, **columns}), shadow


def feature_rows(features: Any, n_features: int) -> Any:
    """``features`` as a matrix of one row per record, checked against the model's feature count."""
    rows = getattr(features, "values", features)
    if getattr(rows, "ndim", 0) != 2 or rows.shape[1] != n_features:
        shape = getattr(rows, "shape", None)
        raise FeatureShapeError(f"features of shape {shape} for a model of {n_features} features")
    return rows
