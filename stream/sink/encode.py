"""Output records: one prediction per scored record, one dead letter per bad record."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring_ascii as _quote
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
    """JSON ``{"id", "prediction", "model_version", "distance"}`` keyed like the input record.

    The JSON is written with one format string per record (the hot path of the worker), from
    pieces already in JSON form: quoted ids, the predictions, the quoted version.
    """
    headers = ((MODEL_VERSION_HEADER, model_version.encode()),)
    version = f'"model_version": {json.dumps(model_version)}'
    records = []
    for message, record_id, prediction, distance in zip(
        decoded.messages, decoded.ids, json_scalars(predictions), distances.tolist(), strict=True
    ):
        value = f'{{"id": {_quote(record_id)}, "prediction": {prediction}, {version}, "distance": {distance!r}}}'
        records.append(OutboundRecord(output_topic, message.key(), value.encode(), headers, message))
    return records


def json_scalars(values: np.ndarray) -> list[str]:
    """Each value as JSON text: numbers as numbers, anything else as a JSON string."""
    if values.dtype.kind in "iub":
        return [str(int(value)) for value in values.tolist()]
    if values.dtype.kind == "f":
        return [repr(float(value)) if math.isfinite(value) else "null" for value in values.tolist()]
    return [json.dumps(value.item() if isinstance(value, np.generic) else value) for value in values]


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
