"""Batch prediction spread over the Dask workers that hold the model."""

from __future__ import annotations

import itertools
import logging
from typing import Any

from distributed import Client

from stream.backend import Backend, get_df_pkg
from stream.predict.plugin import ModelPlugin, predict_on_worker

log = logging.getLogger(__name__)


class ModelSwitchError(RuntimeError):
    """Workers answered with different model versions for one batch."""


class DaskPredictor:
    """Installs the model on every worker, then predicts batches partitioned across them."""

    def __init__(self, client: Client, backend: Backend) -> None:
        self._client = client
        self._backend = backend
        self.version: str | None = None

    def install(self, plugin: ModelPlugin) -> None:
        """Register the plugin; returns once every current worker has loaded the model."""
        self._client.register_plugin(plugin)
        self.version = plugin.version

    def predict(self, features: Any) -> tuple[str, Any]:
        """The model version and the predictions of a frame of features, in its row order."""
        parts = split_rows(features, self._worker_count())
        futures = [self._client.submit(predict_on_worker, part, pure=False) for part in parts]
        answers = self._client.gather(futures)
        versions = {version for version, _ in answers}
        if len(versions) != 1:
            raise ModelSwitchError(f"one batch was predicted by several versions: {sorted(versions)}")
        frames = [frame for _, frame in answers]
        return versions.pop(), get_df_pkg(self._backend).concat(frames, ignore_index=True)

    def _worker_count(self) -> int:
        return max(1, len(self._client.scheduler_info(n_workers=-1)["workers"]))


def split_rows(frame: Any, parts: int) -> list[Any]:
    """Contiguous, nearly equal row ranges; never an empty part."""
    rows = len(frame)
    parts = max(1, min(parts, rows))
    bounds = [rows * i // parts for i in range(parts + 1)]
    return [frame.iloc[start:stop] for start, stop in itertools.pairwise(bounds)]
