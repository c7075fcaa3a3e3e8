"""The workers a benchmark streams through: one ``knnstream serve``, or several replicas of it
in one consumer group, as a deployment scales out (deploy/k8s: one GPU a replica), each with
``--consumers N`` consumer processes sharing its Dask cluster.

Each replica is its own process with its own Dask cluster and a ``/metrics`` port per consumer
(the first port, then the next ones). On the GPU backend each replica sees only its own GPUs.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

import psutil

from stream.backend import Backend
from stream.demo.local_worker import (
    cpu_seconds_of,
    scrape_totals,
    start_worker_process,
    stop_worker_process,
    visible_devices,
    wait_worker_healthy,
)
from stream.errors import KnnStreamError
from stream.settings import BenchSettings


@dataclass(frozen=True)
class CpuSeconds:
    """CPU seconds of the replicas' drivers (their own processes, and with ``--consumers`` the
    consumer processes: consumer, batching, commits) and of their Dask workers."""

    drivers: float
    dask_workers: float

    def __sub__(self, earlier: CpuSeconds) -> CpuSeconds:
        return CpuSeconds(self.drivers - earlier.drivers, self.dask_workers - earlier.dask_workers)


@dataclass(frozen=True)
class Replicas:
    processes: Sequence[subprocess.Popen[bytes]]
    ports: Sequence[int]  # of each consumer: each replica's ``consumers`` in turn
    devices: Sequence[str] = ()  # each replica's CUDA_VISIBLE_DEVICES, when the replicas share out GPUs
    consumers: int = 1  # consumer processes of each replica (serve --consumers)

    def wait_healthy(self) -> None:
        """Until every consumer of every replica answers ``/healthz`` (it consumes)."""
        for replica, process in enumerate(self.processes):
            for port in self._ports_of(replica):
                wait_worker_healthy(process, port)

    def _ports_of(self, replica: int) -> Sequence[int]:
        return self.ports[replica * self.consumers : (replica + 1) * self.consumers]

    def totals(self, names: Sequence[str]) -> dict[str, float]:
        """Each metric of ``names`` summed over the replicas."""
        return scrape_totals(self.ports, names)

    def totals_each(self, name: str) -> list[float]:
        """The metric ``name`` of each consumer (of each replica), in their order."""
        return [scrape_totals([port], [name])[name] for port in self.ports]

    def cpu_seconds(self) -> CpuSeconds:
        used = [
            _drivers_and_dask_cpu_seconds(process.pid, self._ports_of(i)) for i, process in enumerate(self.processes)
        ]
        return CpuSeconds(sum(own for own, _ in used), sum(children for _, children in used))

    def failure(self) -> KnnStreamError | None:
        """An error once a replica has exited (the others would take its partitions over)."""
        for index, process in enumerate(self.processes):
            if process.poll() is not None:
                return KnnStreamError(f"replica {index} exited with code {process.returncode} during the benchmark")
        return None

    def stop(self) -> None:
        """SIGTERM to every replica at once (one at a time, each would hand its partitions to the
        next), then wait for each."""
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            stop_worker_process(process)


def start_replicas(
    settings: BenchSettings, backend: Backend, store: str, topics: dict[str, str], group_id: str, gpus: Sequence[str]
) -> Replicas:
    """``settings.replicas`` workers of the served model, the Dask workers shared out among them
    (on the GPU backend, with more than one replica, each gets its own of ``gpus``)."""
    per_replica = settings.workers // settings.replicas
    flags = [
        "--produce-on", settings.produce_on, "--max-batches-in-flight", str(settings.max_batches_in_flight),
        "--batch-max-wait-ms", str(settings.batch_max_wait_ms), "--input-format", settings.format,
        "--consumers", str(settings.consumers),
    ]  # fmt: skip
    processes: list[subprocess.Popen[bytes]] = []
    ports = [settings.metrics_port + consumer for consumer in range(settings.replicas * settings.consumers)]
    devices: list[str] = []
    try:
        for replica, port in enumerate(ports[:: settings.consumers]):
            own = visible_devices(replica, per_replica, gpus) if backend == "gpu" and settings.replicas > 1 else None
            process = start_worker_process(
                settings.bootstrap_servers, store, "bench@production", topics, group_id, backend, per_replica,
                settings.batch_size, port, settings.scheduler, flags, own,
            )  # fmt: skip
            processes.append(process)
            if own is not None:
                devices.append(own["CUDA_VISIBLE_DEVICES"])
    except BaseException:
        Replicas(processes, ports[: len(processes) * settings.consumers], consumers=settings.consumers).stop()
        raise
    return Replicas(processes, ports, devices, settings.consumers)


def _drivers_and_dask_cpu_seconds(pid: int, ports: Sequence[int]) -> tuple[float, float]:
    """Of one ``serve`` (process ``pid``): the CPU seconds of its drivers, itself and, with
    ``--consumers``, the children listening on the consumers' metrics ``ports``; and of its other
    descendants (the local Dask workers)."""
    parent = psutil.Process(pid)
    drivers, dask_workers = cpu_seconds_of(parent), 0.0
    for child in parent.children(recursive=True):
        try:
            listening = {c.laddr.port for c in child.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
            if listening & set(ports):
                drivers += cpu_seconds_of(child)
            else:
                dask_workers += cpu_seconds_of(child)
        except psutil.NoSuchProcess:
            continue
    return drivers, dask_workers
