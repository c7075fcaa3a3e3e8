"""The Dask cluster the predictions and training run on, started lazily."""

from __future__ import annotations

import logging
from typing import Any

from distributed import Client, LocalCluster

from stream.backend import Backend
from stream.errors import ConfigurationError
from stream.logs import quiet_library_loggers
from stream.predict.interrupts import WORKER_PRELOAD

log = logging.getLogger(__name__)
# At least two threads per worker: one predicts a batch while another produces the batch before it.
MIN_THREADS_PER_WORKER = 2
# A serving worker's local cluster needs neither Dask's statistical profiler (a walk of every
# thread's stack every 10 ms, for the dashboard's profile page) nor its system monitor at 2 Hz.
LOCAL_CLUSTER_CONFIG = {"distributed.worker.profile.enabled": False, "distributed.admin.system-monitor.interval": "5s"}


def serves_in_process(backend: Backend, scheduler: str | None, n_workers: int, choice: str = "auto") -> bool:
    """Whether a serving worker's Dask workers run as threads of its own process: on the CPU
    backend with a local cluster, when ``choice`` (``--local-dask-workers``) says ``threads``, or
    says ``auto`` and the cluster has one worker. Its tasks then take their parts without pickling
    or a socket, and no second interpreter runs an event loop of its own (on the 2-core VM a part's
    round trip took about half the CPU, docs/stream-performance.md). The search releases the GIL.
    Several workers asked for are processes, each an interpreter of its own, and the nanny
    replaces one that dies."""
    if backend != "cpu" or scheduler:
        return False
    return choice == "threads" or (choice == "auto" and n_workers == 1)


def threads_per_worker(batches_in_flight: int, consumers: int = 1) -> int:
    """A thread for each batch that may be under way (each has one task per worker), so a batch
    waiting for its turn to predict is parsed already and the predictions follow each other
    without a gap: ``batches_in_flight`` of each of the ``consumers`` sharing the cluster; never
    fewer than :data:`MIN_THREADS_PER_WORKER`."""
    return max(MIN_THREADS_PER_WORKER, batches_in_flight * consumers)


def start_client(
    backend: Backend,
    scheduler: str | None,
    n_workers: int,
    rmm_pool_size: str | None = None,
    threads: int = MIN_THREADS_PER_WORKER,
    dashboard_address: str = ":0",
    in_process: bool = False,
) -> Client:
    """Connect to ``scheduler`` or start a local cluster of the backend's kind, ``threads`` per worker;
    ``in_process``: a CPU cluster's workers are threads of this process (:func:`serves_in_process`).

    The client talks to the workers directly (``direct_to_workers``) for its actors' calls
    (:mod:`stream.predict.dispatch`) and for gathers: the data goes from the worker to the
    client, not through the scheduler's event loop, which every consumer of the cluster shares.
    The workers' addresses must therefore be reachable from the consumers, as they are from one
    another."""
    if scheduler:
        try:
            return Client(scheduler, timeout="15s", direct_to_workers=True)
        except OSError as exc:
            raise ConfigurationError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from exc
    _quiet_dask_logs()
    import dask

    with dask.config.set(LOCAL_CLUSTER_CONFIG):  # the nannies pass it on to their workers
        cluster = _local_cluster(backend, n_workers, rmm_pool_size, threads, dashboard_address, in_process)
    log.info(
        "started a local %s Dask cluster with %d workers (%s); dashboard at %s",
        backend,
        len(cluster.worker_spec),
        "threads of this process" if in_process and backend == "cpu" else "processes",
        dashboard_url(cluster),
    )
    return Client(cluster, direct_to_workers=True)


def dashboard_url(cluster_or_client: Any) -> str:
    """The Dask dashboard's URL, or why there is none."""
    try:
        link = cluster_or_client.dashboard_link
    except (AttributeError, KeyError):  # no dashboard: bokeh is missing, or the scheduler runs without one
        return "(none)"
    return str(link) if link else "(none)"


def _local_cluster(
    backend: Backend, n_workers: int, rmm_pool_size: str | None, threads: int, dashboard_address: str, in_process: bool
) -> Any:
    if backend == "gpu":
        from dask_cuda import LocalCUDACluster

        return LocalCUDACluster(
            n_workers=_one_per_gpu(n_workers),
            threads_per_worker=threads,
            dashboard_address=dashboard_address,
            rmm_pool_size=rmm_pool_size,
            preload=_worker_preloads(),
        )
    if in_process:
        one_openmp_thread()
    # In process, no preload: SIGINT is this process's own (stream.predict.interrupts is for worker processes).
    preloads = {} if in_process else {"preload": _worker_preloads()}
    return LocalCluster(
        n_workers=n_workers,
        threads_per_worker=threads,
        processes=not in_process,
        dashboard_address=dashboard_address,
        silence_logs=logging.WARNING,
        **preloads,
    )


def one_openmp_thread() -> None:
    """OpenMP and BLAS on one thread in this process, as Dask's nannies start worker processes
    (``distributed.nanny.pre-spawn-environ``): the search gets a core, and its idle OpenMP threads
    do not spin on the other, which the consumer and the producers need. The CPU searches'
    libraries (scikit-learn, FAISS) are imported first, so that their OpenMP runtimes are loaded
    and limited."""
    import faiss  # noqa: F401 - loads its OpenMP runtime, which the limit applies to
    import sklearn.neighbors  # noqa: F401 - the same
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _worker_preloads() -> list[str]:
    """The configured worker preloads, and :mod:`stream.predict.interrupts` (Ctrl-C is the parent's)."""
    import dask

    configured = dask.config.get("distributed.worker.preload") or []
    return [*configured, WORKER_PRELOAD]


def warn_if_short_of_threads(client: Client, wanted: int) -> list[str]:
    """The workers of an existing cluster keep the threads they were started with: name those
    with fewer than ``wanted`` (their batches in flight wait for one another); returns their addresses."""
    short = {address: threads for address, threads in client.nthreads().items() if threads < wanted}
    for address, threads in sorted(short.items()):
        log.warning(
            "Dask worker %s runs %d thread(s), fewer than the %d a serving worker with these batches in"
            " flight needs: a batch waits for the one before it to be produced (start it with --nthreads %d)",
            address,
            threads,
            wanted,
            wanted,
        )
    return sorted(short)


def visible_gpus(cuda_visible_devices: str | None) -> list[str]:
    """The GPUs a process may use, as CUDA names them: those ``CUDA_VISIBLE_DEVICES`` lists when
    it is set (none when it is empty), else every GPU of the host."""
    if cuda_visible_devices is not None:
        return [device.strip() for device in cuda_visible_devices.split(",") if device.strip()]
    from dask_cuda.utils import get_n_gpus

    return [str(index) for index in range(get_n_gpus())]


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
    quiet_library_loggers()


def close_client(client: Client) -> None:
    """Close the client and, when it started one, its local cluster."""
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()
