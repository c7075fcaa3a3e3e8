"""Topic administration: topics made with their configuration and deleted on the real broker;
clean-up that reports a failure instead of raising it."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.demo.kafka_admin import temporary_topics
from stream.sink.admin import create_topics, delete_topics, delete_topics_after_use


def _eventually(check: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """The broker's metadata follows its controller shortly after: wait for it, not a sleep."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "the broker's metadata did not follow within 30 s"
        time.sleep(0.05)


def _partitions(bootstrap: str, topic: str) -> int:
    """The topic's partitions (0: no such topic). All topics are listed: asking for one by name
    would create it again on a broker that creates topics on first use."""
    metadata = AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics.get(topic)
    return 0 if metadata is None else len(metadata.partitions)


def _max_message_bytes(bootstrap: str, topic: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    (described,) = admin.describe_configs([ConfigResource("topic", topic)]).values()
    return str(described.result(timeout=10)["max.message.bytes"].value)


@pytest.mark.kafka
def test_a_topic_is_created_with_its_configuration_and_deleted(kafka_bootstrap: str) -> None:
    name = f"admin-{uuid.uuid4().hex[:12]}"
    try:
        create_topics(kafka_bootstrap, [name], partitions=2, config={"max.message.bytes": "4096"})
        create_topics(kafka_bootstrap, [name], partitions=2)  # an existing topic is fine
        _eventually(lambda: _partitions(kafka_bootstrap, name) == 2)
        assert _max_message_bytes(kafka_bootstrap, name) == "4096"
    finally:
        delete_topics(kafka_bootstrap, [name])
    delete_topics(kafka_bootstrap, [name])  # a missing topic is fine
    _eventually(lambda: _partitions(kafka_bootstrap, name) == 0)


@pytest.mark.kafka
def test_temporary_topics_are_gone_after_the_block_even_when_it_fails(kafka_bootstrap: str) -> None:
    name = f"admin-{uuid.uuid4().hex[:12]}"
    with pytest.raises(RuntimeError, match="the block failed"), temporary_topics(kafka_bootstrap, {name: 3}):
        _eventually(lambda: _partitions(kafka_bootstrap, name) == 3)
        raise RuntimeError("the block failed")
    _eventually(lambda: _partitions(kafka_bootstrap, name) == 0)


def test_clean_up_code_logs_a_failed_deletion_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.sink.admin"):
        delete_topics_after_use("127.0.0.1:1", ["nowhere"], timeout_s=2)  # no broker listens on port 1
    assert "could not delete the topics nowhere" in caplog.text
