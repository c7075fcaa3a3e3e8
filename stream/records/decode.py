"""Decoding feature records; a record that cannot be scored becomes a dead letter.

Input value: JSON ``{"id": "<string>", "features": [<number>, ...]}``. Decoding yields two
streams, the scorable rows and the dead letters, and never raises for a bad record.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json

from stream.errors import RecordError

FLOAT32_MAX = float(np.finfo(np.float32).max)  # a larger feature cannot be scored
_SCHEMA = pa.schema([("id", pa.string()), ("features", pa.list_(pa.float64()))])
# One record per line: Arrow splits the input into blocks at newlines and parses them in parallel.
_ONE_PER_LINE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore")
# A record spread over several lines (JSON allows newlines between tokens): parsed serially.
_MULTI_LINE = pa_json.ParseOptions(explicit_schema=_SCHEMA, unexpected_field_behavior="ignore", newlines_in_values=True)


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
    """Decode a batch: columnar when every record is well formed, record by record otherwise."""
    values = [message.value() for message in messages]
    if all(value and len(value) <= max_record_bytes for value in values):
        columnar = decode_columnar(values, n_features)
        if columnar is not None:
            ids, features = columnar
            return DecodedBatch(messages, ids, features, [])
    return decode_records(messages, n_features, max_record_bytes)


def decode_columnar(values: Sequence[bytes], n_features: int) -> tuple[list[str], np.ndarray] | None:
    """All values parsed at once by Arrow's JSON reader; ``None`` if any record is not clean.

    A batch with a single bad record falls back to :func:`decode_records`, which finds and
    explains it; a clean batch never pays for a Python-level parse of every record.
    """
    multi_line = any(b"\n" in value for value in values)
    decoded = decode_lines(b"\n".join(values), len(values), n_features, multi_line)
    if decoded is None:
        return None
    ids, features = decoded
    return ids.to_pylist(), features


def one_line_values(values: Sequence[bytes | None], max_record_bytes: int) -> bool:
    """Whether every value is present, within the size limit and on one line: then the batch
    can go to the Dask workers as newline-delimited JSON, parsed there at once
    (:func:`decode_lines`, or cuDF's JSON reader on a GPU). Checked without a Python loop per
    value: this runs on the driver for every record."""
    if None in values:
        return False
    lengths = list(map(len, values))  # type: ignore[arg-type]
    if not lengths or min(lengths) == 0 or max(lengths) > max_record_bytes:
        return not lengths
    return not any(map(bytes.__contains__, values, repeat(b"\n")))  # type: ignore[arg-type]


def decode_lines(
    payload: bytes, n_rows: int, n_features: int, multi_line: bool = False
) -> tuple[pa.Array, np.ndarray] | None:
    """Ids (an Arrow string array) and float32 features of ``n_rows`` newline-delimited
    records, or ``None`` if any record is not clean (then :func:`decode_records` explains)."""
    try:
        table = pa_json.read_json(io.BytesIO(payload), parse_options=_MULTI_LINE if multi_line else _ONE_PER_LINE)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n_rows:
        return None
    ids, features = table.column("id").combine_chunks(), table.column("features")
    if ids.null_count or pc.any(pc.equal(pc.utf8_length(ids), 0)).as_py():
        return None
    lists = features.combine_chunks()
    if lists.null_count or pc.any(pc.not_equal(pc.list_value_length(lists), n_features)).as_py():
        return None
    flat = lists.flatten()
    if flat.null_count:
        return None
    matrix = flat.to_numpy(zero_copy_only=False).astype(np.float64).reshape(n_rows, n_features)
    if not np.isfinite(matrix).all() or np.abs(matrix).max(initial=0.0) > FLOAT32_MAX:
        return None
    return ids, matrix.astype(np.float32)


def decode_records(messages: Sequence[Any], n_features: int, max_record_bytes: int) -> DecodedBatch:
    """Record by record: every bad record becomes a dead letter naming its reason."""
    return decode_each(
        messages, n_features, lambda message: decode_value(message.value(), n_features, max_record_bytes)
    )


def decode_each(
    messages: Sequence[Any], n_features: int, decode_one: Callable[[Any], tuple[str, Sequence[float] | np.ndarray]]
) -> DecodedBatch:
    """``decode_one`` (a message → its id and features, or :class:`RecordError`) for every message:
    the good ones in order, the bad ones as dead letters naming their reason."""
    good: list[Any] = []
    ids: list[str] = []
    rows: list[Sequence[float] | np.ndarray] = []
    dead: list[DeadLetter] = []
    for message in messages:
        try:
            record_id, features = decode_one(message)
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
    if any(abs(value) > FLOAT32_MAX for value in features):
        raise RecordError("out_of_range", "a feature is beyond the float32 range")
    return features
