"""The benchmark's load and clock against the real broker."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import Producer

from stream.bench_load import _BATCH_SAMPLES as _SAMPLES
from stream.bench_load import BatchStats, OutputReader, batch_stats, latency_phase
from stream.errors import KnnStreamError
from stream.produce import FeatureRecord

pytestmark = pytest.mark.kafka


def test_a_latency_phase_whose_records_cannot_be_sent_fails_with_the_senders_error(
    kafka_bootstrap: str, new_topic: Callable[..., str]
) -> None:
    """Not after the reader's 600 s wait for predictions that cannot come."""
    reader = OutputReader(kafka_bootstrap, new_topic("out"))
    producer = Producer({"bootstrap.servers": kafka_bootstrap, "message.timeout.ms": 2_000})
    try:
        with pytest.raises(KnnStreamError, match="could not be sent"):
            latency_phase(producer, "no such topic!", reader, [FeatureRecord("a", [1.0])], 100.0)
    finally:
        reader.close()


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


def test_batch_stats_are_the_means_of_the_batches_between_two_scrapes() -> None:
    before = dict.fromkeys(_SAMPLES, 0.0) | {"knnstream_batch_size_records_count": 3.0}
    after = {
        "knnstream_batch_size_records_count": 7.0,  # 4 batches
        "knnstream_batch_size_records_sum": 400.0,
        "knnstream_batch_latency_seconds_count": 4.0,
        "knnstream_batch_latency_seconds_sum": 1.0,
        "knnstream_predict_duration_seconds_count": 5.0,  # one batch's parts were refused: predicted twice
        "knnstream_predict_duration_seconds_sum": 0.25,
    }
    assert batch_stats(before, after) == BatchStats(4, 100.0, 250.0, 50.0)
    assert batch_stats(after, after) == BatchStats(0, 0.0, 0.0, 0.0)
