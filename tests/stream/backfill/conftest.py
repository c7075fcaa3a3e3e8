"""Fixtures of the batch-job tests: one Dask cluster per backend, one trained model."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from distributed import Client, LocalCluster

from model_store import Manifest
from stream.backend import Backend
from stream.settings import TrainSettings
from stream.train.job import train
from tests.helpers import write_history


@dataclass(frozen=True)
class Trained:
    store: str
    manifest: Manifest

    @property
    def ref(self) -> str:
        return f"{self.manifest.name}:{self.manifest.version}"


def _cluster(backend: Backend) -> object:
    if backend == "gpu":
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(n_workers=1, dashboard_address=":0")
    # ":0": the scheduler's HTTP endpoint on a free port, never a warning about a taken 8787
    return LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0", silence_logs=logging.WARNING
    )


@pytest.fixture(scope="session")
def dask_clients() -> Iterator[Callable[[Backend], Client]]:
    """A Dask client per backend, started on first use and shared by the whole session."""
    clients: dict[str, Client] = {}

    def get(backend: Backend) -> Client:
        if backend not in clients:
            clients[backend] = Client(_cluster(backend))
        return clients[backend]

    yield get
    for client in clients.values():
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()


@pytest.fixture
def dask_client(dask_clients: Callable[[Backend], Client], backend: Backend) -> Client:
    return dask_clients(backend)


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, dask_clients: Callable[[Backend], Client]) -> Trained:
    """A classification model of the test blobs, trained once on the CPU backend."""
    root = tmp_path_factory.mktemp("trained")
    data = write_history(Path(root) / "history.parquet", rows=2000)
    store = str(root / "store")
    settings = TrainSettings(
        data=str(data), label="label", k="5", store=store, name="blobs", alias="production", backend="cpu"
    )
    return Trained(store, train(settings, dask_clients("cpu")))
