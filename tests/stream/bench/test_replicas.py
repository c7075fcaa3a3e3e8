"""The benchmark's replicas: a replica that exits is noticed, and stopping reaches every one."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time

import psutil

from stream.bench.replicas import CpuSeconds, Replicas
from tests.helpers import free_port


def _process(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_a_replica_that_exits_is_a_failure_and_stop_ends_the_others() -> None:
    running, exited = _process("import time; time.sleep(60)"), _process("raise SystemExit(4)")
    exited.wait(timeout=30)
    replicas = Replicas([running, exited], [9109, 9110])
    try:
        failure = replicas.failure()
        assert failure is not None and "replica 1 exited with code 4" in str(failure)
        assert Replicas([running], [9109]).failure() is None
    finally:
        replicas.stop()
    assert running.returncode is not None  # stopped (SIGTERM)


def test_cpu_seconds_subtract_field_by_field() -> None:
    assert CpuSeconds(5.0, 20.0) - CpuSeconds(1.5, 4.0) == CpuSeconds(3.5, 16.0)


def test_with_consumers_each_replica_has_a_port_per_consumer_and_their_cpu_counts_as_the_drivers() -> None:
    """A parent that starts one child listening on a consumer's port and one that does not: the
    first counts as a driver, the other as a Dask worker."""
    listens = (
        "import socket, sys, time; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen();"
        " print(s.getsockname()[1], flush=True); t = time.process_time() + 0.3\n"
        "while time.process_time() < t: pass\n"
        "time.sleep(60)"
    )
    busy = "import time; t = time.process_time() + 0.3\nwhile time.process_time() < t: pass\ntime.sleep(60)"
    parent = subprocess.Popen(
        [sys.executable, "-c", f"import subprocess, sys; subprocess.Popen([sys.executable, '-c', {busy!r}]);"
         f" subprocess.run([sys.executable, '-c', {listens!r}])"],
        stdout=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert parent.stdout is not None
        port = int(parent.stdout.readline())
        time.sleep(1.0)  # both children have spent their 0.3 CPU seconds
        replicas = Replicas([parent], [port, port + 1], consumers=2)
        used = replicas.cpu_seconds()
        assert used.drivers >= 0.3 and used.dask_workers >= 0.3, used  # each child's 0.3 s on its side
    finally:
        for child in psutil.Process(parent.pid).children(recursive=True):
            child.kill()
        parent.kill()
        parent.wait(timeout=10)
        if parent.stdout is not None:
            parent.stdout.close()


def test_one_serves_cpu_seconds_count_the_process_and_its_children_apart() -> None:
    """One consumer: the serve's own process is the driver, its descendants the Dask workers."""
    parent = _process(
        "import subprocess, sys, time\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time\\nend = time.process_time() + 0.5\\n"
        "while time.process_time() < end: pass\\ntime.sleep(60)'])\n"
        "time.sleep(60)"
    )
    try:
        deadline = time.monotonic() + 30
        replicas = Replicas([parent], [free_port()])
        while (used := replicas.cpu_seconds()).dask_workers < 0.5 and time.monotonic() < deadline:
            time.sleep(0.1)
        own, children = used.drivers, used.dask_workers
        assert children >= 0.5  # the child's busy half second
        assert own < children
    finally:
        with contextlib.suppress(psutil.NoSuchProcess):
            for child in psutil.Process(parent.pid).children(recursive=True):
                child.kill()
        parent.kill()
        parent.wait()
