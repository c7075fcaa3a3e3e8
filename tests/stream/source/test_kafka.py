"""The Kafka source against the real broker: a rewind goes back to where the group stands."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future

import pytest
from confluent_kafka import Producer, TopicPartition

from stream.batching.microbatch import MicroBatch
from stream.settings import ServeSettings
from stream.source.kafka import KafkaSource

pytestmark = pytest.mark.kafka


def _produce(bootstrap: str, topic: str, count: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap})
    for number in range(count):
        producer.produce(topic, key=str(number).encode(), value=b"{}", partition=0)
    assert producer.flush(30) == 0


def _commit_in_a_transaction(bootstrap: str, source: KafkaSource, topic: str, offset: int) -> None:
    """The group's offset moved to ``offset`` by a transaction, as the worker's own would."""
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": f"t-{uuid.uuid4().hex}"})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.send_offsets_to_transaction([TopicPartition(topic, 0, offset)], source.group_metadata(), 30)
    producer.commit_transaction(30)


@pytest.fixture
def source_of(kafka_bootstrap: str, group_id: str) -> Iterator[Callable[[str], KafkaSource]]:
    sources: list[KafkaSource] = []

    def make(topic: str) -> KafkaSource:
        settings = ServeSettings(
            bootstrap_servers=kafka_bootstrap,
            input_topic=topic,
            group_id=group_id,
            model="m@production",
            batch_max_records=40,
            batch_max_wait_ms=2_000,
        )
        sources.append(KafkaSource(settings))
        return sources[-1]

    yield make
    for source in sources:
        source.close()


def _batch(source: KafkaSource) -> MicroBatch:
    for _ in range(50):
        batch = source.next_batch()
        if batch is not None:
            return batch
    raise AssertionError("no batch within 50 tries")


def _offsets(batch: MicroBatch) -> list[int]:
    return [message.offset() for message in batch.messages]


def test_rewind_goes_back_to_the_batch_when_nothing_is_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str], source_of: Callable[[str], KafkaSource]
) -> None:
    topic = new_topic("rewind")
    _produce(kafka_bootstrap, topic, 100)
    source = source_of(topic)
    first = _batch(source)
    assert _offsets(first) == list(range(40))
    source.rewind([first])
    assert _offsets(_batch(source)) == list(range(40))


def test_batches_rewound_together_go_back_to_the_earliest_when_nothing_is_committed(
    kafka_bootstrap: str, new_topic: Callable[..., str], source_of: Callable[[str], KafkaSource]
) -> None:
    """Two batches in flight fail together on a partition with no committed offset: the records
    of both are read again, from the first batch's first offset (not the second batch's)."""
    topic = new_topic("rewind")
    _produce(kafka_bootstrap, topic, 100)
    source = source_of(topic)
    first, second = _batch(source), _batch(source)
    assert _offsets(first) + _offsets(second) == list(range(80))
    source.rewind([first, second])
    assert _offsets(_batch(source)) == list(range(40))


def test_rewind_goes_to_the_committed_offset_when_the_batch_was_completed_after_all(
    kafka_bootstrap: str, new_topic: Callable[..., str], source_of: Callable[[str], KafkaSource]
) -> None:
    """The batch failed as far as the worker knows, but its offsets reached the group (a
    transaction whose commit timed out on its way and was completed by the broker): the records
    must not be processed again."""
    topic = new_topic("rewind")
    _produce(kafka_bootstrap, topic, 100)
    source = source_of(topic)
    batch = _batch(source)
    assert _offsets(batch) == list(range(40))
    _commit_in_a_transaction(kafka_bootstrap, source, topic, 40)
    source.rewind([batch])
    assert _offsets(_batch(source)) == list(range(40, 80))


def test_a_batch_of_records_read_ahead_is_opened_when_they_were_read(
    kafka_bootstrap: str, new_topic: Callable[..., str], source_of: Callable[[str], KafkaSource]
) -> None:
    """While a batch is in flight the next one's records are read ahead; their batch's wait (and
    its latency, as the metrics report it) counts from then, not from when it is handed out."""
    topic = new_topic("read-ahead")
    source = source_of(topic)
    _produce(kafka_bootstrap, topic, 50)
    first = _batch(source)
    assert len(first) == 40
    in_flight: Future[None] = Future()

    def tick() -> None:  # the batch in flight is done once the rest is read ahead
        if source._strays and not in_flight.done():  # the read-ahead is what is tested
            in_flight.set_result(None)

    source.wait_paused(in_flight, tick)
    read_by = time.monotonic()
    second = _batch(source)
    assert _offsets(second) == list(range(40, 50))
    assert second.opened_at <= read_by
