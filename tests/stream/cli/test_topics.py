"""``knnstream topics create`` on the real broker: the three topics with their partitions and
retention; a second run leaves them as they are."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource

from stream.sink.admin import delete_topics_after_use

pytestmark = pytest.mark.kafka

REPO = Path(__file__).resolve().parents[3]


def _create(bootstrap: str, names: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stream", "topics", "create", "--bootstrap-servers", bootstrap,
         "--input-topic", names[0], "--output-topic", names[1], "--dlq-topic", names[2],
         "--partitions", "2", "--retention-ms", "3600000"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_topics_create_makes_the_three_topics_once(kafka_bootstrap: str) -> None:
    suffix = uuid.uuid4().hex[:10]
    names = [f"in-{suffix}", f"out-{suffix}", f"dlq-{suffix}"]
    try:
        first = _create(kafka_bootstrap, names)
        assert first.returncode == 0, first.stderr
        assert first.stderr.count("created (2 partitions)") == 3
        admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
        metadata = admin.list_topics(timeout=10).topics
        assert all(len(metadata[name].partitions) == 2 for name in names)
        configs = admin.describe_configs([ConfigResource("topic", name) for name in names])
        assert {future.result(timeout=10)["retention.ms"].value for future in configs.values()} == {"3600000"}
        again = _create(kafka_bootstrap, names)
        assert again.returncode == 0 and again.stderr.count("exists already") == 3, again.stderr
    finally:
        delete_topics_after_use(kafka_bootstrap, names)
