"""The producer plugin on a real Dask worker against the real broker: a delivery returns once
the broker has every record, and a record the broker refuses fails the task."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import pytest
from distributed import Client, LocalCluster

from stream.errors import DeliveryError
from stream.sink.kafka import KafkaSink
from stream.sink.workers import ProducerPlugin, worker_producer
from tests.helpers import consume_until

HEADERS = (("knnstream.model.version", b"v7"),)


@pytest.fixture
def client(kafka_bootstrap: str) -> Iterator[Client]:
    with (
        LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.register_plugin(ProducerPlugin({"bootstrap.servers": kafka_bootstrap, "acks": "all"}, 10.0))
        yield client


def _deliver(topic: str, keys: Sequence[bytes | None], values: Sequence[bytes]) -> int:
    worker_producer().deliver(topic, keys, values, HEADERS)
    return len(values)


def test_a_worker_delivers_keyed_records_with_their_headers(
    client: Client, kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("worker-out")
    keys = [f"k{i}".encode() for i in range(99)] + [None]
    values = [f"v{i}".encode() for i in range(100)]
    assert client.submit(_deliver, topic, keys, values, pure=False).result(timeout=60) == 100
    messages = consume_until(kafka_bootstrap, topic, lambda got: len(got) >= 100, timeout_s=60)
    assert sorted((m.key(), m.value()) for m in messages if m.key() is not None) == sorted(
        zip(keys[:99], values[:99], strict=True)
    )
    assert [m.value() for m in messages if m.key() is None] == [b"v99"]
    assert all(m.headers() == list(HEADERS) for m in messages)


def test_every_worker_builds_its_producer_when_the_plugin_is_set_up(client: Client) -> None:
    started = client.run(lambda dask_worker: worker_producer(dask_worker).started)
    assert list(started.values()) == [True]  # before any batch was scored


def test_a_record_the_broker_refuses_fails_the_task(client: Client, new_topic: Callable[..., str]) -> None:
    topic = new_topic("small", config={"max.message.bytes": "200"})
    with pytest.raises(DeliveryError, match="not delivered"):
        client.submit(_deliver, topic, [b"a", b"b"], [b"small", b"x" * 5000], pure=False).result(timeout=60)


def test_a_full_producer_queue_waits_for_room_and_loses_nothing(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    topic = new_topic("full-queue")
    config = {"bootstrap.servers": kafka_bootstrap, "queue.buffering.max.messages": 10, "linger.ms": 50}
    sink = KafkaSink(config, delivery_timeout_s=30)
    keys = [f"k{i}".encode() for i in range(500)]
    try:
        times = sink.deliver_values(topic, keys, [f"v{i}".encode() for i in range(500)], HEADERS)
    finally:
        sink.close()
    assert times.produce_s > 0 and times.acknowledge_s > 0  # a full queue: producing waited on acknowledgements
    messages = consume_until(kafka_bootstrap, topic, lambda got: len(got) >= 500, timeout_s=60)
    assert sorted(m.key() for m in messages) == sorted(keys)
    assert all(m.headers() == list(HEADERS) for m in messages)
