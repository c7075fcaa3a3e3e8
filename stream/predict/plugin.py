"""Per-worker model loading as a Dask ``WorkerPlugin``.

The scheduler keeps registered plugins and runs ``setup`` on every worker, including workers
that join later or replace a dead one, so each worker always holds the model before a batch
reaches it. Only the store location and the version travel; each worker reads and verifies
the files itself.
"""

from __future__ import annotations

import logging
from typing import Any

from distributed import WorkerPlugin, get_worker

from model_store import ModelStore
from stream.backend import Backend
from stream.predict.model import MODEL_FILE, KnnIndex, KnnPredictor, build_predictor

PLUGIN_NAME = "knnstream-model"
log = logging.getLogger(__name__)


class ModelPlugin(WorkerPlugin):
    """Loads one model version from the store onto a Dask worker."""

    name = PLUGIN_NAME

    def __init__(self, store_root: str, model_name: str, version: str, backend: Backend) -> None:
        self.store_root = store_root
        self.model_name = model_name
        self.version = version
        self.backend = backend
        self.predictor: KnnPredictor | None = None

    def setup(self, worker: Any) -> None:
        loaded = ModelStore(self.store_root).load(f"{self.model_name}:{self.version}")
        index = KnnIndex.from_npz(loaded.files[MODEL_FILE])
        self.predictor = build_predictor(index, self.backend)
        log.info(
            "model %s:%s loaded on worker %s (%d rows, backend %s)",
            self.model_name,
            self.version,
            worker.address,
            index.features.shape[0],
            self.backend,
        )

    def teardown(self, worker: Any) -> None:
        self.predictor = None


def worker_predictor() -> tuple[str, KnnPredictor]:
    """The version and predictor held by the Dask worker running the current task."""
    plugin = get_worker().plugins[PLUGIN_NAME]
    if not isinstance(plugin, ModelPlugin) or plugin.predictor is None:
        raise RuntimeError("this Dask worker holds no knnstream model")
    return plugin.version, plugin.predictor


def predict_on_worker(features: Any) -> tuple[str, Any]:
    """Dask task: predict one partition with the model of this worker."""
    version, predictor = worker_predictor()
    return version, predictor.predict(features)
