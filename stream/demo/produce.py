"""Feature records sent to a topic at a rate: the records, synthetic ones, and the sending
(``knnstream produce``, the demo and the bench); :mod:`stream.demo.produce_command` is the command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from stream.errors import DeliveryError
from stream.settings import InputFormat


@dataclass(frozen=True)
class FeatureRecord:
    id: str
    features: list[float]

    def key(self) -> bytes:
        return self.id.encode()

    def value(self, input_format: InputFormat = "json") -> bytes:
        """The record's value in ``input_format`` (float32: the features only, the id in the key)."""
        if input_format == "float32":
            return np.asarray(self.features, dtype="<f4").tobytes()
        return json.dumps({"id": self.id, "features": self.features}).encode()


def synthetic_records(count: int, n_features: int, seed: int, prefix: str = "r") -> Iterator[FeatureRecord]:
    """Records around a few Gaussian centres, the shape of the demo's training data."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, size=(8, n_features))
    for start in range(0, count, 10_000):
        rows = min(10_000, count - start)
        chosen = centres[rng.integers(0, len(centres), rows)]
        block = chosen + rng.normal(size=(rows, n_features))
        for offset, row in enumerate(block.tolist()):
            yield FeatureRecord(f"{prefix}{start + offset}", row)


def send(
    producer: Producer,
    topic: str,
    records: Iterable[FeatureRecord],
    rate: float | None = None,
    on_sent: Any = None,
    input_format: InputFormat = "json",
) -> int:
    """Produce every record (keyed by id, valued in ``input_format``), paced to ``rate`` per
    second; raise unless all arrive."""
    failures: list[str] = []

    def on_delivery(error: KafkaError | None, message: Message) -> None:
        if error is not None:
            failures.append(error.str())

    started = time.monotonic()
    sent = 0
    for record in records:
        if rate is not None:
            _pace(started, sent, rate)
        _produce(producer, topic, record.key(), record.value(input_format), on_delivery)
        if on_sent is not None:
            on_sent(record)
        sent += 1
    remaining = producer.flush(60)
    if remaining or failures:
        raise DeliveryError(f"{remaining + len(failures)} of {sent} records were not delivered to {topic}")
    return sent


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=on_delivery)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.05)


def _pace(started: float, sent: int, rate: float) -> None:
    due = started + sent / rate
    delay = due - time.monotonic()
    if delay > 0:
        time.sleep(delay)
