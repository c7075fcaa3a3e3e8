"""Topic administration on the broker: reachability, which topics exist, creating and deleting them.

Shared by ``knnstream topics create``, ``serve --create-topics``, ``produce``'s topic check,
the demo, the bench and the tests. Metadata is always asked for every topic at once: asking
for one topic by name would create it on a broker that creates topics on first use.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, ClusterMetadata, NewTopic

from stream.errors import KafkaSetupError
from stream.logs import LIBRDKAFKA_LOGGER

log = logging.getLogger(__name__)

ClientConfig = str | Mapping[str, Any]  # bootstrap servers alone, or a whole librdkafka configuration


def admin_client(client: ClientConfig) -> AdminClient:
    """An admin client whose librdkafka log lines go through :data:`~stream.logs.LIBRDKAFKA_LOGGER`."""
    config: dict[str, Any] = {"bootstrap.servers": client} if isinstance(client, str) else dict(client)
    return AdminClient({**config, "logger": LIBRDKAFKA_LOGGER})  # type: ignore[dict-item]  # the stubs omit it


def _servers(client: ClientConfig) -> str:
    return client if isinstance(client, str) else str(client["bootstrap.servers"])


def broker_reachable(client: ClientConfig, timeout_s: float = 3.0) -> bool:
    try:
        admin_client(client).list_topics(timeout=timeout_s)
    except KafkaException:
        return False
    return True


def cluster_metadata(client: ClientConfig, timeout_s: float = 10.0) -> ClusterMetadata:
    """The broker's metadata of every topic; one clear :class:`KafkaSetupError` when it does not answer."""
    try:
        return admin_client(client).list_topics(timeout=timeout_s)
    except KafkaException as exc:
        raise KafkaSetupError(
            f"cannot reach Kafka at {_servers(client)} within {timeout_s:.0f} s ({exc.args[0].str()}):"
            " is the broker running (bash deploy/kafka.sh status) and --bootstrap-servers right?"
        ) from exc


def missing_topics(client: ClientConfig, topics: Sequence[str], timeout_s: float = 10.0) -> list[str]:
    """Those of ``topics`` the broker does not have."""
    present = cluster_metadata(client, timeout_s).topics
    return [topic for topic in topics if topic not in present]


def create_topics(
    bootstrap_servers: ClientConfig,
    topics: Sequence[str],
    partitions: int = 1,
    timeout_s: float = 30.0,
    config: Mapping[str, str] | None = None,
    replication_factor: int = 1,
) -> list[str]:
    """Create the topics (an existing topic is fine) and wait until the broker has them;
    returns those that were created."""
    admin = admin_client(bootstrap_servers)
    new = [NewTopic(topic, partitions, replication_factor, config=dict(config or {})) for topic in topics]
    futures = admin.create_topics(new, operation_timeout=timeout_s, request_timeout=timeout_s)
    return _await_each(futures, "create", KafkaError.TOPIC_ALREADY_EXISTS, timeout_s)


def delete_topics(bootstrap_servers: ClientConfig, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """Delete the topics (a missing topic is fine); the broker removes their files in the background."""
    if not topics:
        return
    admin = admin_client(bootstrap_servers)
    futures = admin.delete_topics(list(topics), operation_timeout=timeout_s, request_timeout=timeout_s)
    _await_each(futures, "delete", KafkaError.UNKNOWN_TOPIC_OR_PART, timeout_s)


def delete_topics_after_use(bootstrap_servers: ClientConfig, topics: Sequence[str], timeout_s: float = 30.0) -> None:
    """:func:`delete_topics` for clean-up code: a failure is logged, so it never hides the error
    that is being cleaned up after."""
    try:
        delete_topics(bootstrap_servers, topics, timeout_s)
    except Exception as exc:  # noqa: BLE001 - clean-up: whatever went wrong is reported, never raised
        log.warning("could not delete the topics %s: %s", ", ".join(topics), exc)


def _await_each(futures: Mapping[str, Future[None]], action: str, already_done: int, timeout_s: float) -> list[str]:
    """Wait for each topic's operation; ``already_done`` is the error code meaning there was
    nothing to do (the topic existed already, or was gone already). Returns the topics acted on."""
    done = []
    for topic, future in futures.items():
        try:
            future.result(timeout=timeout_s)
            done.append(topic)
        except TimeoutError as exc:
            raise KafkaSetupError(f"cannot {action} topic {topic}: no answer within {timeout_s:.0f} s") from exc
        except KafkaException as exc:
            if exc.args[0].code() != already_done:
                raise KafkaSetupError(f"cannot {action} topic {topic}: {exc.args[0].str()}") from exc
    return done
