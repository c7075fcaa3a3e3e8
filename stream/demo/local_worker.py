"""Running ``knnstream serve`` as a child process, for the demo and the benchmark."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Mapping, Sequence

import psutil
from prometheus_client.parser import text_string_to_metric_families

from stream.errors import KnnStreamError

SCRAPE_TIMEOUT_S = 5.0  # a worker's /metrics


def start_worker_process(
    bootstrap_servers: str,
    store: str,
    model: str,
    topics: dict[str, str],
    group_id: str,
    backend: str,
    dask_workers: int,
    batch_max_records: int,
    metrics_port: int,
    scheduler: str | None = None,
    extra_flags: Sequence[str] = (),
    extra_env: Mapping[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the worker; ``topics`` names the ``input``, ``output`` and ``dlq`` topics;
    ``extra_env`` is added to the worker's environment (e.g. the GPUs it may use)."""
    command = [
        sys.executable, "-m", "stream", "serve",
        "--bootstrap-servers", bootstrap_servers, "--input-topic", topics["input"],
        "--output-topic", topics["output"], "--dlq-topic", topics["dlq"], "--group-id", group_id,
        "--model", model, "--store", store, "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1",
        "--backend", backend, "--dask-workers", str(dask_workers), "--batch-max-records", str(batch_max_records),
    ]  # fmt: skip
    if scheduler:
        command += ["--scheduler", scheduler]
    command += list(extra_flags)
    # As deployed (deploy/compose, deploy/k8s): glibc's arenas capped, unless the caller chose.
    env = {"MALLOC_ARENA_MAX": "2", **os.environ, **(extra_env or {}), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(command, env=env)


def wait_worker_healthy(worker: subprocess.Popen[bytes], port: int, timeout_s: float = 180.0) -> None:
    """Wait until ``/healthz`` answers 200; fail early if the worker exits."""
    wait_until_ok(worker, f"http://127.0.0.1:{port}/healthz", "the worker", timeout_s)


def visible_devices(replica: int, per_replica: int, devices: Sequence[str]) -> dict[str, str]:
    """The ``CUDA_VISIBLE_DEVICES`` of one of several workers sharing out the GPUs ``devices``
    (this process's, in their order), each with ``per_replica`` of its own."""
    first, stop = replica * per_replica, (replica + 1) * per_replica
    if len(devices) < stop:
        raise KnnStreamError(f"worker {replica} needs GPUs {first} to {stop - 1}; only {len(devices)} are visible")
    return {"CUDA_VISIBLE_DEVICES": ",".join(devices[first:stop])}


def wait_until_ok(process: subprocess.Popen[bytes], url: str, what: str, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; :class:`KnnStreamError` when ``process`` exits first
    or the time runs out."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise KnnStreamError(f"{what} exited with code {process.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=1) as answer:
                if answer.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise KnnStreamError(f"{what} was not ready within {timeout_s:.0f} s ({url})")


def stop_worker_process(worker: subprocess.Popen[bytes], timeout_s: float = 60.0) -> int:
    """SIGTERM, then wait; a worker that does not stop in time is killed."""
    worker.terminate()
    try:
        return worker.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        worker.kill()
        return worker.wait(timeout=10)


def process_tree(pid: int, measure: Callable[[psutil.Process], float]) -> tuple[float, float]:
    """``measure`` of process ``pid``, and summed over its descendants (a descendant that has
    exited meanwhile no longer counts)."""
    process = psutil.Process(pid)
    descendants = 0.0
    for child in process.children(recursive=True):
        try:
            descendants += measure(child)
        except psutil.NoSuchProcess:
            continue
    return measure(process), descendants


def cpu_seconds_of(process: psutil.Process) -> float:
    """CPU seconds (user and system) used so far by ``process`` alone."""
    times = process.cpu_times()
    return float(times.user + times.system)


def scrape_totals(ports: Sequence[int], names: Sequence[str]) -> dict[str, float]:
    """Of each of ``names``, the sum of its samples (over all labels) on the ``/metrics`` of the
    workers at ``ports``."""
    totals = dict.fromkeys(names, 0.0)
    for port in ports:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=SCRAPE_TIMEOUT_S) as answer:
            text = answer.read().decode()
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in totals:
                    totals[sample.name] += sample.value
    return totals
