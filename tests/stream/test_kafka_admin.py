"""Topic administration against the real broker: topics made with their configuration, and deleted."""

from __future__ import annotations

import logging
import uuid

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.kafka_admin import create_topics, delete_topics, delete_topics_after_use

pytestmark = pytest.mark.kafka


def _topics(bootstrap: str) -> set[str]:
    return set(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics)


def test_a_topic_is_created_with_its_configuration_and_deleted(kafka_bootstrap: str) -> None:
    name = f"admin-{uuid.uuid4().hex[:12]}"
    create_topics(kafka_bootstrap, [name], partitions=2, config={"max.message.bytes": "4096"})
    create_topics(kafka_bootstrap, [name], partitions=2)  # an existing topic is fine
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    (described,) = admin.describe_configs([ConfigResource("topic", name)]).values()
    assert described.result(timeout=10)["max.message.bytes"].value == "4096"
    assert len(admin.list_topics(name, timeout=10).topics[name].partitions) == 2
    delete_topics(kafka_bootstrap, [name])
    delete_topics(kafka_bootstrap, [name])  # a missing topic is fine
    assert name not in _topics(kafka_bootstrap)


def test_clean_up_code_logs_a_failed_deletion_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.kafka_admin"):
        delete_topics_after_use("127.0.0.1:1", ["nowhere"], timeout_s=2)  # no broker listens on port 1
    assert "could not delete the topics nowhere" in caplog.text
