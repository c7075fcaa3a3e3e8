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
from typing import Any

from distributed import WorkerPlugin, get_worker

from model_store import ModelStore
from stream.backend import Backend
from stream.predict.memory import check_fits, free_device_bytes
from stream.predict.model import MODEL_FILE, KnnIndex, KnnPredictor, build_predictor

PLUGIN_PREFIX = "knnstream-model-"
log = logging.getLogger(__name__)


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

    def setup(self, worker: Any) -> None:
        loaded = ModelStore(self.store_root).load(f"{self.model_name}:{self.version}")
        index = KnnIndex.from_npz(loaded.files[MODEL_FILE])
        if self.backend == "gpu":
            rows, n_features = index.features.shape
            check_fits(rows, n_features, self.max_batch_rows, index.k, free_device_bytes())
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


def worker_predictor(version: str, worker: Any = None) -> KnnPredictor:
    """The predictor of ``version`` held by ``worker`` (default: the worker running this task)."""
    plugin = (worker or get_worker()).plugins.get(plugin_name(version))
    if not isinstance(plugin, ModelPlugin) or plugin.predictor is None:
        raise RuntimeError(f"this Dask worker holds no knnstream model of version {version}")
    return plugin.predictor


def predict_on_worker(features: Any, version: str, shadow_version: str | None = None) -> tuple[Any, Any]:
    """Dask task: predict one partition with ``version``, and with ``shadow_version`` if given.

    Returns the prediction frame and the shadow's predictions (or ``None``).
    """
    frame = worker_predictor(version).predict(features)
    shadow = None if shadow_version is None else worker_predictor(shadow_version).predict(features)["prediction"]
    return frame, shadow
