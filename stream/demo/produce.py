"""``knnstream produce``: send feature records to a topic, from a file or synthetic, at a rate."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from confluent_kafka import KafkaError, Message, Producer

from stream.errors import ConfigurationError, DeliveryError
from stream.settings import InputFormat, ProduceSettings


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


def file_records(path: str, id_column: str | None) -> Iterator[FeatureRecord]:
    """Records from Parquet, CSV or JSON lines; features are the numeric columns but the id."""
    import pandas as pd

    lowered = path.lower()
    if lowered.endswith((".jsonl", ".json", ".ndjson")):
        frame = pd.read_json(path, lines=True)
        if "features" in frame.columns:
            ids = frame["id"].astype(str) if "id" in frame.columns else frame.index.astype(str)
            for record_id, features in zip(ids, frame["features"], strict=True):
                yield FeatureRecord(record_id, [float(v) for v in features])
            return
    else:
        frame = pd.read_csv(path) if lowered.endswith((".csv", ".csv.gz")) else pd.read_parquet(path)
    if id_column is not None and id_column not in frame.columns:
        raise ConfigurationError(f"id column {id_column!r} not in {path}")
    ids = frame[id_column].astype(str) if id_column else frame.index.astype(str)
    numeric = [c for c in frame.columns if c != id_column and frame[c].dtype.kind in "biuf"]
    for record_id, row in zip(ids, frame[numeric].to_numpy(dtype=float).tolist(), strict=True):
        yield FeatureRecord(record_id, row)


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


def run_produce(settings: ProduceSettings) -> int:
    if (settings.data is None) == (settings.synthetic is None):
        raise ConfigurationError("give exactly one of --data FILE or --synthetic N")
    records = (
        synthetic_records(settings.synthetic, settings.features, settings.seed)
        if settings.synthetic is not None
        else file_records(settings.data or "", settings.id_column)
    )
    producer = Producer({**settings.librdkafka_config(), "linger.ms": 20, "compression.type": "lz4"})
    return send(producer, settings.topic, records, settings.rate, input_format=settings.format)
