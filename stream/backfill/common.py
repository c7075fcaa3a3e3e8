"""What ``score`` and ``replay`` share: the model, the Dask client, the metrics endpoint."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from distributed import Client

from model_store import Manifest, ModelStore, ModelStoreError
from stream.backend import Backend
from stream.backfill.progress import BackfillMetrics, MetricsEndpoint
from stream.errors import ConfigurationError
from stream.predict.cluster import close_client, start_client
from stream.predict.distributed import DaskPredictor
from stream.predict.plugin import ModelPlugin
from stream.settings import ComputeSettings

log = logging.getLogger(__name__)


def resolve_manifest(store: str, ref: str) -> Manifest:
    """The manifest ``ref`` (NAME@ALIAS or NAME:VERSION) names; an alias is read once, here."""
    try:
        return ModelStore(store).resolve(ref)
    except ModelStoreError as exc:
        raise ConfigurationError(str(exc)) from exc


def store_root(store: str) -> str:
    """A local store as an absolute path, so workers started elsewhere find it; URLs unchanged."""
    return store if "://" in store else os.path.abspath(store)


def install_model(
    client: Client, backend: Backend, store: str, manifest: Manifest, probabilities: bool = False
) -> DaskPredictor:
    """Load exactly ``manifest``'s version on every worker (the streaming worker's plugin)."""
    predictor = DaskPredictor(client, backend, probabilities=probabilities)
    predictor.load(ModelPlugin(store_root(store), manifest.name, manifest.version, backend))
    predictor.activate(manifest.version)
    return predictor


@contextmanager
def job_client(settings: ComputeSettings, backend: Backend, client: Client | None) -> Iterator[Client]:
    """``client`` when given; else one to --scheduler or a local cluster, closed at the end."""
    if client is not None:
        yield client
        return
    own = start_client(backend, settings.scheduler, settings.dask_workers, dashboard_address=settings.dashboard_address)
    try:
        yield own
    finally:
        close_client(own)


@contextmanager
def metrics_endpoint(metrics: BackfillMetrics, host: str, port: int | None) -> Iterator[MetricsEndpoint | None]:
    """Serve ``/metrics`` while the job runs when a port is given."""
    if port is None:
        yield None
        return
    try:
        endpoint = MetricsEndpoint(metrics.registry, host, port)
    except OSError as exc:
        raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    log.info("metrics on http://%s:%d/metrics", host, endpoint.port)
    try:
        yield endpoint
    finally:
        endpoint.stop()
