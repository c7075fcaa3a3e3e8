"""The ``knnstream serve`` processes of a scenario. Every process started here runs in a session
of its own and is killed with its whole process group on the way out, Dask children included."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil

from stream.demo.local_worker import wait_worker_healthy
from stream.errors import KnnStreamError
from tests.helpers import free_port, read_output, start_worker
from tests.stream.guarantees.scenario import DASK_WORKER_PROCESSES, MODEL_REF, SESSION_TIMEOUT_MS, wait_until
from tests.stream.guarantees.topics import Topics


def serve_args(bootstrap: str, topics: Topics, group: str, store: str, port: int, batch: int, *extra: str) -> list[str]:
    return [
        "--bootstrap-servers", bootstrap, "--input-topic", topics.input, "--output-topic", topics.output,
        "--dlq-topic", topics.dlq, "--group-id", group, "--model", MODEL_REF, "--store", store,
        "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--backend", "cpu", "--dask-workers", "1",
        "--batch-max-records", str(batch), "--batch-max-wait-ms", "100",
        "--session-timeout-ms", str(SESSION_TIMEOUT_MS), "--max-poll-interval-ms", "10000",
        *extra,
    ]  # fmt: skip


class WorkerProcess:
    """One ``knnstream serve`` in a new session, so that its process group is the whole worker."""

    def __init__(self, name: str, args: Sequence[str], port: int, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.port = port
        self.process = start_worker(args, env=env, start_new_session=True)
        self.exit_code: int | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def log(self) -> str:
        return read_output(self.process)

    def check_alive(self) -> None:
        if not self.alive():
            raise AssertionError(f"worker {self.name} exited with {self.process.returncode}: {self.log()[-4000:]}")

    def wait_healthy(self, timeout_s: float = 90.0) -> None:
        try:
            wait_worker_healthy(self.process, self.port, timeout_s)
        except KnnStreamError as exc:
            raise AssertionError(f"worker {self.name}: {exc}: {self.log()[-4000:]}") from exc

    def metrics(self) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as answer:
            return str(answer.read().decode())

    def metric(self, line_start: str) -> float:
        """The value of the first /metrics line starting with ``line_start`` (0 when absent)."""
        for line in self.metrics().splitlines():
            if line.startswith(line_start):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def metric_lines(self, line_start: str) -> dict[str, float]:
        """Every /metrics line starting with ``line_start``: series → value."""
        found = {}
        for line in self.metrics().splitlines():
            if line.startswith(line_start):
                series, value = line.rsplit(" ", 1)
                found[series] = float(value)
        return found

    def signal_group(self, signum: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL the worker's whole process group, as a crashing pod; waits for the main process."""
        self.signal_group(signal.SIGKILL)
        self.exit_code = self.process.wait(timeout=30)

    def terminate(self, timeout_s: float) -> tuple[int, float]:
        """SIGTERM to the main process only (as a pod's stop); its exit code and seconds to exit."""
        started = time.monotonic()
        self.process.send_signal(signal.SIGTERM)
        self.exit_code = self.process.wait(timeout=timeout_s)
        return self.exit_code, time.monotonic() - started

    def wait_exit(self, timeout_s: float) -> int:
        self.exit_code = self.process.wait(timeout=timeout_s)
        return self.exit_code

    def close(self) -> None:
        """Make sure nothing of this worker is left running: the group is killed, the process reaped."""
        self.signal_group(signal.SIGCONT)
        self.signal_group(signal.SIGKILL)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)

    def dask_worker_pids(self) -> list[int]:
        """The Dask worker processes of the worker's local cluster (spawned by its nannies)."""
        try:
            children = psutil.Process(self.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        pids = []
        for child in children:
            try:
                command = " ".join(child.cmdline())
            except psutil.NoSuchProcess:
                continue
            if "spawn_main" in command:
                pids.append(child.pid)
        return pids

    def hold_batch_in_predict(self) -> list[int]:
        """SIGSTOP the Dask workers; returns (their pids) once a batch is decoded but not predicted.

        That batch cannot finish its prediction until the Dask workers are continued. The worker
        must run them as processes (started with :data:`DASK_WORKER_PROCESSES`).
        """
        held = self.dask_worker_pids()
        assert held, f"no Dask worker processes under pid {self.pid} (start it with {DASK_WORKER_PROCESSES})"
        for pid in held:
            os.kill(pid, signal.SIGSTOP)
        wait_until(self._batch_in_predict, "a batch decoded and waiting for its prediction")
        return held

    def _batch_in_predict(self) -> bool:
        decoded = self.metric("knnstream_batch_size_records_count")
        predicted = self.metric("knnstream_predict_duration_seconds_count")
        return decoded > predicted

    def peak_rss_bytes(self) -> int:
        """VmHWM of the main process: its peak resident set size so far."""
        return _status_kib(self.pid, "VmHWM") * 1024

    def rss_bytes(self) -> int:
        return _status_kib(self.pid, "VmRSS") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


@dataclass
class Workers:
    """Starts workers with shared arguments; on exit every one of them is killed and reaped."""

    bootstrap: str
    topics: Topics
    group: str
    store: str
    batch: int
    started: list[WorkerProcess] = field(default_factory=list)

    def start(self, name: str, *extra: str, healthy: bool = True, env: dict[str, str] | None = None) -> WorkerProcess:
        port = free_port()
        args = serve_args(self.bootstrap, self.topics, self.group, self.store, port, self.batch, *extra)
        worker = WorkerProcess(name, args, port, env)
        self.started.append(worker)
        if healthy:
            worker.wait_healthy()
        return worker

    def __enter__(self) -> Workers:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        for worker in self.started:
            worker.close()
        if error is not None:
            for worker in self.started:
                print(f"----- log of worker {worker.name} (last 6000 characters) -----\n{worker.log()[-6000:]}")
