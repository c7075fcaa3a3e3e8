"""Following a model alias: load a new version on every worker, then switch between batches.

When the alias the worker serves (``NAME@ALIAS``) moves, the new version is loaded and verified
on every Dask worker while the old one keeps serving; only when all workers hold it does the
worker switch, before its next batch. A version that fails to load or verify is refused: the old
version keeps serving, a log line says why, and a metric counts it. A shadow alias is followed the
same way, and its agreement with the served version is measured on every batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge

from model_store import Manifest, ModelRef, ModelStore, ModelStoreError, parse_model_ref
from stream.backend import Backend
from stream.predict.distributed import DaskPredictor, ModelLoadError, Prediction
from stream.predict.plugin import ModelPlugin

log = logging.getLogger(__name__)


class FollowMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.reloads = Counter(
            "knnstream_model_reloads", "Switches to a new model version", ("role",), registry=registry
        )
        self.reload_failures = Counter(
            "knnstream_model_reload_failures",
            "New model versions refused because they failed to load or verify",
            ("role",),
            registry=registry,
        )
        self.shadow_compared = Counter(
            "knnstream_shadow_compared_records",
            "Records scored by both the served and the shadow version",
            registry=registry,
        )
        self.shadow_agreed = Counter(
            "knnstream_shadow_agreed_records",
            "Records where the shadow version agreed with the served one",
            registry=registry,
        )
        self.shadow_agreement = Gauge(
            "knnstream_shadow_agreement_ratio",
            "Agreement of the shadow version with the served one, last batch",
            registry=registry,
        )


class ModelFollower:
    """Keeps the predictor's served (and shadow) version in step with the store's aliases."""

    def __init__(
        self,
        store: ModelStore,
        served: ModelRef,
        shadow: ModelRef | None,
        predictor: DaskPredictor,
        backend: Backend,
        n_features: int,
        metrics: FollowMetrics,
        on_switch: Callable[[Manifest], None],
        interval_s: float = 5.0,
        max_batch_rows: int = 10_000,
    ) -> None:
        self._store = store
        self._served = served
        self._shadow = shadow
        self._predictor = predictor
        self._backend = backend
        self._n_features = n_features
        self._metrics = metrics
        self._on_switch = on_switch
        self._interval_s = interval_s
        self._max_batch_rows = max_batch_rows
        self._next_check = time.monotonic() + interval_s
        self._refused: set[str] = set()

    def start(self, served: Manifest) -> None:
        """Load the first served version (errors propagate: the worker cannot start without it)."""
        self._predictor.load(self._plugin(served))
        self._predictor.activate(served.version)
        self._on_switch(served)
        if self._shadow is not None:
            self._follow(self._shadow, "shadow", lambda: None)  # nothing in flight yet

    def maybe_switch(self, settle: Callable[[], None]) -> None:
        """Between batches: look at the aliases when the interval has passed.

        ``settle`` runs once a new version is loaded and before it replaces the one in use: it
        must see the batches in flight complete, because the version replaced is unloaded from
        the workers, and a task of such a batch that had not yet started would fail without it
        (and its batch be consumed again, after the parts already produced by other workers).
        """
        if time.monotonic() < self._next_check:
            return
        self._next_check = time.monotonic() + self._interval_s
        if self._served.is_alias:
            self._follow(self._served, "served", settle)
        if self._shadow is not None and self._shadow.is_alias:
            self._follow(self._shadow, "shadow", settle)

    def observe(self, prediction: Prediction) -> None:
        """Count how often the shadow version agrees with the served one."""
        if prediction.shadow is None or len(prediction.frame) == 0:
            return
        served = prediction.frame["prediction"].to_numpy()
        shadow = prediction.shadow
        matches = np.isclose(served, shadow) if served.dtype.kind == "f" else served == shadow
        agreed = int(np.sum(matches))
        self._metrics.shadow_compared.inc(len(served))
        self._metrics.shadow_agreed.inc(agreed)
        self._metrics.shadow_agreement.set(agreed / len(served))

    def _follow(self, ref: ModelRef, role: str, settle: Callable[[], None]) -> None:
        current = self._predictor.version if role == "served" else self._predictor.shadow_version
        try:
            manifest = self._store.resolve(ref)
        except ModelStoreError as exc:
            log.warning("cannot resolve %s model %s: %s; keeping version %s", role, ref, exc, current)
            return
        if manifest.version == current or manifest.version in self._refused:
            return
        try:
            self._check_compatible(manifest)
            self._predictor.load(self._plugin(manifest))
        except (ModelLoadError, ModelStoreError) as exc:
            self._refused.add(manifest.version)
            self._metrics.reload_failures.labels(role).inc()
            log.error("refused %s version %s of %s: %s; keeping version %s", role, manifest.version, ref, exc, current)
            return
        settle()
        if role == "served":
            previous = self._predictor.activate(manifest.version)
            self._on_switch(manifest)
        else:
            previous = self._predictor.shadow_version
            self._predictor.set_shadow(manifest.version)
        self._metrics.reloads.labels(role).inc()
        log.info("%s model %s switched from version %s to %s", role, ref, previous, manifest.version)

    def _check_compatible(self, manifest: Manifest) -> None:
        if manifest.n_features != self._n_features:
            raise ModelLoadError(
                f"version {manifest.version} takes {manifest.n_features} features, the stream has {self._n_features}"
            )

    def _plugin(self, manifest: Manifest) -> ModelPlugin:
        return ModelPlugin(self._store.root, manifest.name, manifest.version, self._backend, self._max_batch_rows)


def parse_shadow(text: str | None) -> ModelRef | None:
    return None if text is None else parse_model_ref(text)
