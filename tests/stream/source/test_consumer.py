"""The input consumer's configuration, accepted by librdkafka."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer

from stream.settings import ServeSettings
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS, consumer_config

pytestmark = pytest.mark.kafka


def test_a_full_prefetch_queue_backs_off_briefly_not_for_librdkafkas_default_second(kafka_bootstrap: str) -> None:
    settings = ServeSettings(bootstrap_servers=kafka_bootstrap, input_topic="t", group_id="g", model="m@production")
    config = consumer_config(settings)
    assert config["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS < 1000
    Consumer(config).close()  # librdkafka knows the property and accepts the value
