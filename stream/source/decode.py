"""Decoding feature records; a record that cannot be scored becomes a dead letter.

Input value: JSON ``{"id": "<string>", "features": [<number>, ...]}``. Decoding yields two
streams, the scorable rows and the dead letters, and never raises for a bad record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stream.errors import RecordError

_FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class DeadLetter:
    """A record that cannot be scored, with the reason it goes to the dead-letter topic."""

    message: Any
    reason: str
    error_class: str
    error_message: str


@dataclass(frozen=True)
class DecodedBatch:
    """The scorable part of a batch (row i belongs to ``messages[i]``) and its dead letters."""

    messages: Sequence[Any]
    ids: Sequence[str]
    features: np.ndarray
    dead_letters: Sequence[DeadLetter]


def decode_batch(messages: Sequence[Any], n_features: int, max_record_bytes: int) -> DecodedBatch:
    good: list[Any] = []
    ids: list[str] = []
    rows: list[list[float]] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            record_id, features = decode_value(message.value(), n_features, max_record_bytes)
        except RecordError as exc:
            dead.append(DeadLetter(message, exc.reason, type(exc).__name__, str(exc)))
            continue
        good.append(message)
        ids.append(record_id)
        rows.append(features)
    matrix = np.array(rows, dtype=np.float32).reshape(len(rows), n_features)
    return DecodedBatch(good, ids, matrix, dead)


def decode_value(value: bytes | None, n_features: int, max_record_bytes: int) -> tuple[str, list[float]]:
    """The id and features of one record value, or a :class:`RecordError` saying why not."""
    if not value:
        raise RecordError("empty_value", "the record has no value")
    if len(value) > max_record_bytes:
        raise RecordError("oversized", f"the value has {len(value)} bytes, more than the limit of {max_record_bytes}")
    try:
        document = json.loads(value)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RecordError("invalid_json", f"the value is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise RecordError("invalid_schema", "the value is not a JSON object")
    return _record_id(document), _features(document, n_features)


def _record_id(document: dict[str, Any]) -> str:
    record_id = document.get("id")
    if not isinstance(record_id, str) or not record_id:
        raise RecordError("invalid_schema", "'id' must be a non-empty string")
    return record_id


def _features(document: dict[str, Any], n_features: int) -> list[float]:
    features = document.get("features")
    if not isinstance(features, list):
        raise RecordError("invalid_schema", "'features' must be a list of numbers")
    if len(features) != n_features:
        raise RecordError("wrong_feature_count", f"expected {n_features} features, got {len(features)}")
    if not all(isinstance(value, (int, float)) and not isinstance(value, bool) for value in features):
        raise RecordError("invalid_schema", "'features' must hold numbers only")
    if not all(math.isfinite(value) for value in features):
        raise RecordError("non_finite", "the features contain NaN or infinity")
    if any(abs(value) > _FLOAT32_MAX for value in features):
        raise RecordError("out_of_range", "a feature is beyond the float32 range")
    return features
