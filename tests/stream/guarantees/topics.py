"""The topics of a scenario, and the keyed feature records produced to its input."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Message, Producer

from tests.helpers import blobs


@dataclass(frozen=True)
class Topics:
    input: str
    output: str
    dlq: str


def record_value(record_id: str, row: Sequence[float], padding: int = 0) -> bytes:
    document: dict[str, Any] = {"id": record_id, "features": list(row)}
    if padding:
        document["note"] = "x" * padding  # ignored by the decoder; makes records (and the backlog) bigger
    return json.dumps(document).encode()


Positions = dict[str, tuple[int, int]]  # record id → (partition, offset)


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]]) -> list[tuple[int, int]]:
    """Send (key, value) pairs in order; returns each one's (partition, offset) from its delivery report."""
    reports: dict[int, tuple[int, int]] = {}
    errors: list[str] = []
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})

    def on_delivery(number: int) -> Callable[[Any, Message], None]:
        def delivered(error: Any, message: Message) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                reports[number] = (int(message.partition() or 0), int(message.offset() or 0))

        return delivered

    count = 0
    for key, value in items:
        while True:
            try:
                producer.produce(topic, key=key, value=value, on_delivery=on_delivery(count))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
        count += 1
    assert producer.flush(120) == 0, "records left unsent"
    assert not errors, errors[:3]
    return [reports[number] for number in range(count)]


def produce_records(bootstrap: str, topic: str, count: int, start: int = 0, padding: int = 0) -> Positions:
    """Keyed good records ``r<start>`` ... ; the key is the id, so one id stays on one partition."""
    features, _ = blobs(count, seed=start + 7)
    ids = [f"r{start + i}" for i in range(count)]
    items = ((i.encode(), record_value(i, row, padding)) for i, row in zip(ids, features.tolist(), strict=True))
    return dict(zip(ids, produce(bootstrap, topic, items), strict=True))
