"""The input record formats: JSON, and raw float32 vectors.

``json`` (the default): the value is ``{"id": "<string>", "features": [<number>, ...]}``
(:mod:`stream.records.decode`).

``float32``: the value is the features as little-endian IEEE-754 float32 numbers back to back,
``4 * n_features`` bytes and nothing else; the record's id is its key, in UTF-8. There is nothing
to parse: the values of a batch, joined, are the bytes of its feature matrix, so a Dask worker
turns a batch into an array with one copy (and a GPU worker into a device array with one more).

Both formats have the same three steps: a check on the driver, without a Python loop per record,
that a batch looks clean (:func:`looks_clean`); the joined values parsed on a Dask worker
(:func:`stream.records.parse.parse_part`); and, for a batch that is not clean, decoding record by record with a dead
letter naming the reason of each bad record (:func:`decode_batch_as`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from stream.errors import RecordError
from stream.records.decode import DecodedBatch, decode_batch, decode_each, one_line_values
from stream.settings import InputFormat

FLOAT32 = np.dtype("<f4")


def looks_clean(
    input_format: InputFormat,
    values: Sequence[bytes | None],
    keys: Sequence[bytes | None],
    max_record_bytes: int,
    n_features: int,
) -> bool:
    """Whether the batch can go to the Dask workers as it is; a batch that cannot is decoded on the
    driver."""
    if input_format == "json":
        return one_line_values(values, max_record_bytes)
    fits = n_features * FLOAT32.itemsize <= max_record_bytes
    return fits and bool(values) and _float32_sizes(values, n_features) and _keys_present(keys)


def joined(input_format: InputFormat, values: Sequence[bytes]) -> bytes:
    """The batch's values as one payload: JSON lines, or the float32 matrix's bytes."""
    return b"\n".join(values) if input_format == "json" else b"".join(values)


def parse_float32(payload: bytes, keys: pa.Array, n_features: int) -> tuple[pa.Array, np.ndarray] | None:
    """The ids (the keys as UTF-8) and features of joined float32 values; ``None`` when a key is
    not UTF-8 or empty, or a feature is not finite."""
    rows = len(keys)
    if len(payload) != rows * n_features * FLOAT32.itemsize:
        return None
    matrix = np.frombuffer(payload, FLOAT32).reshape(rows, n_features)
    if not np.isfinite(matrix).all():
        return None
    if keys.null_count or pc.any(pc.equal(pc.binary_length(keys), 0)).as_py():
        return None
    ids = _utf8(keys)
    return None if ids is None else (ids, matrix)


def decode_batch_as(
    input_format: InputFormat, messages: Sequence[Any], n_features: int, max_record_bytes: int
) -> DecodedBatch:
    """Decode a batch on the driver: every bad record becomes a dead letter naming its reason."""
    if input_format == "json":
        return decode_batch(messages, n_features, max_record_bytes)
    return decode_float32_records(messages, n_features, max_record_bytes)


def decode_float32_records(messages: Sequence[Any], n_features: int, max_record_bytes: int) -> DecodedBatch:
    """Record by record: every bad float32 record becomes a dead letter naming its reason."""
    return decode_each(
        messages, n_features, lambda m: decode_float32_value(m.key(), m.value(), n_features, max_record_bytes)
    )


def decode_float32_value(
    key: bytes | None, value: bytes | None, n_features: int, max_record_bytes: int
) -> tuple[str, np.ndarray]:
    """The id and features of one float32 record, or a :class:`RecordError` saying why not."""
    if not value:
        raise RecordError("empty_value", "the record has no value")
    if len(value) > max_record_bytes:
        raise RecordError("oversized", f"the value has {len(value)} bytes, more than the limit of {max_record_bytes}")
    expected = n_features * FLOAT32.itemsize
    if len(value) != expected:
        raise RecordError(
            "wrong_feature_count", f"expected {n_features} float32 features ({expected} bytes), got {len(value)} bytes"
        )
    if not key:
        raise RecordError("missing_key", "the record has no key, and a float32 record's key is its id")
    try:
        record_id = key.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RecordError("invalid_key", f"the key is not UTF-8: {exc}") from exc
    row = np.frombuffer(value, FLOAT32)
    if not np.isfinite(row).all():
        raise RecordError("non_finite", "the features contain NaN or infinity")
    return record_id, row


def _float32_sizes(values: Sequence[bytes | None], n_features: int) -> bool:
    if None in values:
        return False
    return set(map(len, values)) == {n_features * FLOAT32.itemsize}  # type: ignore[arg-type]


def _keys_present(keys: Sequence[bytes | None]) -> bool:
    return None not in keys and min(map(len, keys)) > 0  # type: ignore[arg-type]


def _utf8(keys: pa.Array) -> pa.Array | None:
    try:
        return keys.cast(pa.string())  # validates the UTF-8
    except pa.ArrowInvalid:
        return None
