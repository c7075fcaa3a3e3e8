"""``serve --create-topics`` (development) creates the missing topics and serves; without it a
missing topic stops the start (tests/stream/guarantees/test_configuration.py)."""

from __future__ import annotations

import signal
import uuid

import pytest

from stream.sink.admin import delete_topics_after_use, missing_topics
from tests.helpers import free_port, read_output, start_worker, wait_healthy
from tests.stream.guarantees.scenario import MODEL_REF, publish_model

pytestmark = pytest.mark.kafka


def test_create_topics_creates_the_missing_ones_and_serves(kafka_bootstrap: str, group_id: str, tmp_store: str) -> None:
    publish_model(tmp_store, rows=500)
    suffix = uuid.uuid4().hex[:10]
    names = [f"in-{suffix}", f"out-{suffix}", f"dlq-{suffix}"]
    port = free_port()
    worker = start_worker(
        ["--bootstrap-servers", kafka_bootstrap, "--input-topic", names[0], "--output-topic", names[1],
         "--dlq-topic", names[2], "--group-id", group_id, "--model", MODEL_REF, "--store", tmp_store,
         "--backend", "cpu", "--metrics-host", "127.0.0.1", "--metrics-port", str(port), "--create-topics"],
        start_new_session=True,
    )  # fmt: skip
    try:
        wait_healthy(worker, port)
        assert missing_topics(kafka_bootstrap, names) == []
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(timeout=60) == 0, read_output(worker)[-3000:]
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(timeout=30)
        delete_topics_after_use(kafka_bootstrap, names)
