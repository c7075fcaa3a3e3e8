"""Small Kafka administration: reachability, topic creation, the local broker script."""

from __future__ import annotations

import logging
import os
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream.errors import KafkaSetupError

log = logging.getLogger(__name__)

BROKER_SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "kafka.sh"


def broker_reachable(bootstrap_servers: str, timeout_s: float = 3.0) -> bool:
    try:
        AdminClient({"bootstrap.servers": bootstrap_servers}).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def create_topics(
    bootstrap_servers: str,
    topics: Sequence[str],
    partitions: int = 1,
    timeout_s: float = 30.0,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create the topics (an existing topic is fine) and wait until the broker has them."""
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    new = [NewTopic(topic, partitions, 1, config=dict(config or {})) for topic in topics]
    futures = admin.create_topics(new, operation_timeout=timeout_s)
    _await_each(futures, "create", KafkaError.TOPIC_ALREADY_EXISTS, timeout_s)


def delete_topics(bootstrap_servers: str, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Delete the topics (a missing topic is fine); the broker removes their files in the background."""
    if not topics:
        return
    admin = AdminClient({"bootstrap.servers": bootstrap_servers})
    futures = admin.delete_topics(list(topics), operation_timeout=timeout_s)
    _await_each(futures, "delete", KafkaError.UNKNOWN_TOPIC_OR_PART, timeout_s)


def _await_each(futures: Mapping[str, Future[None]], action: str, already_done: int, timeout_s: float) -> None:
    """Wait for each topic's operation; ``already_done`` is the error code meaning there was
    nothing to do (the topic existed already, or was gone already)."""
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
        except TimeoutError as exc:
            raise KafkaSetupError(f"cannot {action} topic {topic}: no answer within {timeout_s:.0f} s") from exc
        except KafkaException as exc:
            if exc.args[0].code() != already_done:
                raise KafkaSetupError(f"cannot {action} topic {topic}: {exc.args[0]}") from exc


def delete_topics_after_use(bootstrap_servers: str, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """:func:`delete_topics` for clean-up code: a failure is logged, so it never hides the error
    that is being cleaned up after."""
    try:
        delete_topics(bootstrap_servers, topics, timeout_s)
    except Exception as exc:  # noqa: BLE001 - clean-up: whatever went wrong is reported, never raised
        log.warning("could not delete the topics %s: %s", ", ".join(topics), exc)


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
