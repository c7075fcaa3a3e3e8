"""The benchmark's reader of the output topic against the real broker: every id once, at its
first arrival, in one process or several."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from stream.bench.output import OutputReader, reader_config, take_in
from stream.errors import KnnStreamError
from stream.source.consumer import FETCH_QUEUE_BACKOFF_MS

pytestmark = pytest.mark.kafka


def test_the_reader_counts_each_keyed_prediction_once_and_skips_unkeyed_ones(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("out")
    producer = Producer({"bootstrap.servers": kafka_bootstrap})
    for key in (b"a", b"b", b"a", None, "é".encode()):
        producer.produce(topic, value=b'{"prediction": 1}', key=key)
    producer.flush(10)
    reader = OutputReader(kafka_bootstrap, topic)
    try:
        reader.wait_until_assigned(timeout_s=60)
        reader.wait_for(3, timeout_s=60)
        assert sorted(reader.received_at) == ["a", "b", "é"]
        with pytest.raises(KnnStreamError, match="only 3 of 4 predictions"):
            reader.wait_for(4, timeout_s=2)
    finally:
        reader.close()


def test_the_reader_of_predictions_backs_off_briefly_when_its_prefetch_is_full(kafka_bootstrap: str) -> None:
    config = reader_config(kafka_bootstrap)
    assert config["fetch.queue.backoff.ms"] == FETCH_QUEUE_BACKOFF_MS < 1000
    assert reader_config(kafka_bootstrap)["group.id"] != config["group.id"]  # each reader reads every prediction
    Consumer(config).close()  # librdkafka knows the property and accepts the value


@pytest.mark.parametrize(("processes", "partitions"), [(2, 4), (3, 4), (3, 2)])
def test_a_reader_of_several_processes_sees_every_id_once_at_its_first_arrival(
    kafka_bootstrap: str, new_topic: Callable[..., str], processes: int, partitions: int
) -> None:
    """One group: the topic's partitions shared out among the children (with more children than
    partitions, some hold none)."""
    topic = new_topic("out", partitions=partitions)
    reader = OutputReader(kafka_bootstrap, topic, processes=processes)
    try:
        reader.wait_until_assigned(timeout_s=60)
        sent_at = time.monotonic()
        keys = [f"p{number}" for number in range(3_000)]
        _produce_keys(kafka_bootstrap, topic, keys + keys[:10], partitions)  # ten ids twice
        reader.wait_for(len(keys), timeout_s=60)
        with pytest.raises(KnnStreamError, match=f"only {len(keys)} of {len(keys) + 1}"):
            reader.wait_for(len(keys) + 1, timeout_s=2)
        assert sorted(reader.received_at) == sorted(keys)
        assert sent_at < min(reader.received_at.values()) <= max(reader.received_at.values()) < time.monotonic()
        reader.forget()
        assert reader.count == 0
        _produce_keys(kafka_bootstrap, topic, ["after"], partitions)
        reader.wait_for(1, timeout_s=60)
        assert list(reader.received_at) == ["after"]
        assert reader.cpu_seconds() > 0
    finally:
        reader.close()
    assert [child.exitcode for child in reader._children] == [0] * processes  # stopped and joined


def test_a_reader_whose_process_ends_says_so(kafka_bootstrap: str, new_topic: Callable[..., str]) -> None:
    reader = OutputReader(kafka_bootstrap, new_topic("out", partitions=2), processes=2)
    try:
        reader.wait_until_assigned(timeout_s=60)
        reader._children[1].kill()
        with pytest.raises(KnnStreamError, match="reader 1 ended"):
            reader.wait_for(1, timeout_s=30)
    finally:
        reader.close()


def test_an_id_keeps_its_earliest_arrival() -> None:
    received: dict[str, float] = {}
    take_in(received, 2.0, ["a"])
    take_in(received, 1.0, ["a", "b"])  # read again in another child, taken in later
    take_in(received, 3.0, ["a", "b", "c"])
    assert received == {"a": 1.0, "b": 1.0, "c": 3.0}


def _produce_keys(bootstrap: str, topic: str, keys: list[str], partitions: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for number, key in enumerate(keys):
        producer.produce(topic, value=b'{"prediction": 1}', key=key.encode(), partition=number % partitions)
    producer.flush(10)
