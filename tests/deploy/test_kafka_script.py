"""deploy/kafka.sh start against a JVM that dies: one that dies before writing a line of its log
(killed from outside as it starts) is started once more; one that logs why it stopped is not,
and the start fails naming the log."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from tests.helpers import free_consecutive_ports

pytestmark = pytest.mark.kafka  # the broker's jars, fetched by deploy/kafka.sh

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka.sh"

# A `java` ahead of the real one on PATH: the broker's launch (its main class kafka.Kafka) does
# what $FAKE_BROKER says the first time, or every time; the script's other Java tools run as they are.
FAKE_JAVA = """#!/usr/bin/env bash
for argument in "$@"; do
  if [[ $argument == kafka.Kafka ]]; then
    if [[ $FAKE_BROKER == dies-silently-once && ! -e $FAKE_MARK ]]; then touch "$FAKE_MARK"; exit 137; fi
    if [[ $FAKE_BROKER == logs-and-exits ]]; then echo "ERROR the broker cannot start: bad config"; exit 1; fi
  fi
done
exec {real_java} "$@"
"""


def _kafka_sh(tmp_path: Path, action: str, fake_broker: str, port: int) -> subprocess.CompletedProcess[str]:
    real_java = subprocess.run(["bash", "-c", "command -v java"], capture_output=True, text=True, check=True)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "java"
    fake.write_text(FAKE_JAVA.format(real_java=real_java.stdout.strip()))
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "FAKE_BROKER": fake_broker,
        "FAKE_MARK": str(tmp_path / "died-once"),
        "KNNSTREAM_KAFKA_PORT": str(port),
        "KNNSTREAM_KAFKA_CONTROLLER_PORT": str(port + 1),
        "KNNSTREAM_KAFKA_HOME": str(tmp_path / "kafka"),
    }
    return subprocess.run(["bash", str(SCRIPT), action], env=env, capture_output=True, text=True, timeout=240)


def test_a_broker_that_dies_before_logging_is_started_once_more(tmp_path: Path) -> None:
    port = free_consecutive_ports(2)
    try:
        started = _kafka_sh(tmp_path, "start", "dies-silently-once", port)
        assert started.returncode == 0, started.stderr[-3000:]
        assert "the broker process exited with status 137" in started.stderr
        assert "starting it once more" in started.stderr
        assert started.stdout.strip() == f"127.0.0.1:{port}"
    finally:
        stopped = _kafka_sh(tmp_path, "stop", "as-it-is", port)
    assert stopped.returncode == 0, stopped.stderr[-3000:]


def test_a_broker_that_logs_why_it_stopped_fails_the_start_once(tmp_path: Path) -> None:
    started = _kafka_sh(tmp_path, "start", "logs-and-exits", free_consecutive_ports(2))
    assert started.returncode == 1
    assert "ERROR the broker cannot start: bad config" in started.stderr  # the log's tail
    assert started.stderr.count("starting Kafka") == 1, "not started again"
    assert "error: broker exited during startup" in started.stderr.splitlines()[-1]
