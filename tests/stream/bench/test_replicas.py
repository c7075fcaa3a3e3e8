"""The benchmark's replicas: a replica that exits is noticed, and stopping reaches every one."""

from __future__ import annotations

import subprocess
import sys

from stream.bench.replicas import CpuSeconds, Replicas


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
