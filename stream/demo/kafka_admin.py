"""The demo's and the bench's Kafka helpers: throwaway topics and the local broker script.

Topic administration itself lives in :mod:`stream.sink.admin` (serve and the CLI use it too).
"""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from stream.errors import KafkaSetupError
from stream.sink.admin import create_topics, delete_topics_after_use

log = logging.getLogger(__name__)

BROKER_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka.sh"


@contextmanager
def temporary_topics(bootstrap_servers: str, partitions: Mapping[str, int]) -> Iterator[None]:
    """Topics (name → partition count) that exist for the ``with`` block: created, then deleted
    when it ends, also when it fails (the bench's and the demo's throwaway topics)."""
    try:
        for name, count in partitions.items():
            create_topics(bootstrap_servers, [name], count)
        yield
    finally:
        delete_topics_after_use(bootstrap_servers, list(partitions))


def start_local_broker(bootstrap_servers: str) -> None:
    _run_broker_script("start", bootstrap_servers)


def stop_local_broker(bootstrap_servers: str) -> None:
    _run_broker_script("stop", bootstrap_servers)


def _run_broker_script(action: str, bootstrap_servers: str) -> None:
    host, _, port = bootstrap_servers.split(",")[0].rpartition(":")
    if host not in {"127.0.0.1", "localhost"}:
        raise KafkaSetupError(f"no Kafka answers at {bootstrap_servers}, and only a local broker can be started")
    if not BROKER_SCRIPT.exists():
        raise KafkaSetupError(f"no Kafka answers at {bootstrap_servers}, and {BROKER_SCRIPT} is missing")
    result = subprocess.run(
        ["bash", str(BROKER_SCRIPT), action], env={**os.environ, "KNNSTREAM_KAFKA_PORT": port}, check=False
    )
    if result.returncode != 0:
        raise KafkaSetupError(f"deploy/kafka.sh {action} failed with exit code {result.returncode}")
