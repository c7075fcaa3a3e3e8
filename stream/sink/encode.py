"""Output records: one prediction per scored record, one dead letter per bad record."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.source.decode import DeadLetter, DecodedBatch

MODEL_VERSION_HEADER = "knnstream.model.version"


@dataclass(frozen=True)
class OutboundRecord:
    """One record to produce, with the position of the input record it answers."""

    topic: str
    key: bytes | None
    value: bytes
    headers: Sequence[tuple[str, bytes]]
    source: Any  # the input message


def encode_predictions(
    decoded: DecodedBatch,
    predictions: np.ndarray,
    distances: np.ndarray,
    model_version: str,
    output_topic: str,
) -> list[OutboundRecord]:
    """JSON ``{"id", "prediction", "model_version", "distance"}`` keyed like the input record."""
    headers = [(MODEL_VERSION_HEADER, model_version.encode())]
    records = []
    for message, record_id, prediction, distance in zip(
        decoded.messages, decoded.ids, predictions.tolist(), distances.tolist(), strict=True
    ):
        value = {"id": record_id, "prediction": prediction, "model_version": model_version, "distance": distance}
        records.append(OutboundRecord(output_topic, message.key(), json.dumps(value).encode(), headers, message))
    return records


def encode_dead_letters(
    dead_letters: Sequence[DeadLetter], dlq_topic: str, max_value_bytes: int
) -> list[OutboundRecord]:
    """The original key and value, with headers naming the source position and the error.

    A value longer than ``max_value_bytes`` (an oversized record) is cut to that length and
    marked with a ``knnstream.value.truncated`` header.
    """
    records = []
    for dead in dead_letters:
        value = dead.message.value() or b""
        headers = dead_letter_headers(dead)
        if len(value) > max_value_bytes:
            value = value[:max_value_bytes]
            headers.append(("knnstream.value.truncated", b"true"))
        records.append(OutboundRecord(dlq_topic, dead.message.key(), value, headers, dead.message))
    return records


def dead_letter_headers(dead: DeadLetter) -> list[tuple[str, bytes]]:
    message = dead.message
    return [
        ("knnstream.source.topic", str(message.topic()).encode()),
        ("knnstream.source.partition", str(message.partition()).encode()),
        ("knnstream.source.offset", str(message.offset()).encode()),
        ("knnstream.error.reason", dead.reason.encode()),
        ("knnstream.error.class", dead.error_class.encode()),
        ("knnstream.error.message", dead.error_message.encode()),
    ]
