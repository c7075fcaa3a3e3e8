"""The Dask cluster the predictions and training run on, started lazily."""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client, LocalCluster

from stream.backend import Backend
from stream.errors import ConfigurationError

log = logging.getLogger(__name__)
# Two threads per worker: one predicts a batch while the other produces the batch before it.
THREADS_PER_WORKER = 2


def start_client(backend: Backend, scheduler: str | None, n_workers: int, rmm_pool_size: str | None = None) -> Client:
    """Connect to ``scheduler`` or start a local cluster of the backend's kind."""
    if scheduler:
        try:
            return Client(scheduler, timeout="15s")
        except OSError as exc:
            raise ConfigurationError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    _quiet_dask_logs()
    cluster = _local_cluster(backend, n_workers, rmm_pool_size)
    log.info("started a local %s Dask cluster with %d workers", backend, len(cluster.worker_spec))
    return Client(cluster)


def _local_cluster(backend: Backend, n_workers: int, rmm_pool_size: str | None) -> Any:
    if backend == "gpu":
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(
            n_workers=_one_per_gpu(n_workers),
            threads_per_worker=THREADS_PER_WORKER,
            dashboard_address=":0",
            rmm_pool_size=rmm_pool_size,
        )
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=THREADS_PER_WORKER,
        processes=True,
        dashboard_address=":0",
        silence_logs=logging.WARNING,
    )


def _one_per_gpu(n_workers: int) -> int:
    """At most one GPU worker per visible GPU (dask-cuda pins each worker to one device)."""
    from dask_cuda.utils import get_n_gpus

    gpus = get_n_gpus()
    if n_workers > gpus:
        log.warning("%d GPU workers asked for, %d GPU(s) visible: starting %d", n_workers, gpus, gpus)
    return min(n_workers, gpus)


def _quiet_dask_logs() -> None:
    """Dask's scheduler and nannies log every start and stop at INFO; keep warnings only."""
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("distributed", "dask_cuda")):
            logging.getLogger(name).setLevel(max(logging.WARNING, logging.getLogger().level))


def close_client(client: Client) -> None:
    """Close the client and, when it started one, its local cluster."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()
