"""The float32 record format beside JSON: the driver's check, the workers' parse, and the
record-by-record decoding that names every bad record's reason."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from stream.errors import RecordError
from stream.records.formats import decode_batch_as, decode_float32_value, joined, looks_clean
from stream.records.parse import parse_part
from tests.fakes import FakeMessage

ROWS = [[0.5, -1.25, 3.0], [1e-3, 2.5e6, -7.0]]
KEYS = [b"a", "é".encode()]


def _float32(row: list[float]) -> bytes:
    return np.array(row, "<f4").tobytes()


def _json(key: bytes, row: list[float]) -> bytes:
    return json.dumps({"id": key.decode(), "features": row}).encode()


def test_both_formats_parse_to_the_same_ids_and_features() -> None:
    keys = pa.array(KEYS, pa.binary())
    from_json = parse_part(
        "json", joined("json", [_json(k, r) for k, r in zip(KEYS, ROWS, strict=True)]), keys, 3, "cpu"
    )
    from_float32 = parse_part("float32", joined("float32", [_float32(r) for r in ROWS]), keys, 3, "cpu")
    assert from_json is not None and from_float32 is not None
    assert from_json[0].to_pylist() == from_float32[0].to_pylist() == ["a", "é"]
    assert from_float32[1].dtype == np.float32
    np.testing.assert_array_equal(from_json[1], from_float32[1])


@pytest.mark.parametrize(
    ("values", "keys"),
    [
        ([_float32(ROWS[0]), _float32([1.0, float("nan"), 2.0])], KEYS),  # not finite
        ([_float32(ROWS[0]), _float32(ROWS[1])], [b"a", b"\xff\xfe"]),  # a key that is not UTF-8
        ([_float32(ROWS[0]), _float32(ROWS[1])], [b"a", b""]),  # an empty key
        ([_float32(ROWS[0]), _float32(ROWS[1])[:-1]], KEYS),  # a short value
    ],
)
def test_a_float32_part_with_a_bad_record_is_not_parsed(values: list[bytes], keys: list[bytes]) -> None:
    assert parse_part("float32", joined("float32", values), pa.array(keys, pa.binary()), 3, "cpu") is None


def test_the_driver_sends_only_float32_batches_that_look_clean() -> None:
    good = [_float32(r) for r in ROWS]
    assert looks_clean("float32", good, KEYS, 1_000, 3)
    assert not looks_clean("float32", [good[0], None], KEYS, 1_000, 3)
    assert not looks_clean("float32", good, [b"a", None], 1_000, 3)
    assert not looks_clean("float32", good, [b"a", b""], 1_000, 3)
    assert not looks_clean("float32", [good[0], good[1] + b"\0\0\0\0"], KEYS, 1_000, 3)
    assert not looks_clean("float32", good, KEYS, 11, 3)  # 12 bytes a record, over the limit
    assert not looks_clean("float32", [], [], 1_000, 3)


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (b"a", b"", "empty_value"),
        (b"a", None, "empty_value"),
        (b"a", b"\0" * 64, "oversized"),
        (b"a", _float32([1.0, 2.0]), "wrong_feature_count"),
        (b"a", _float32(ROWS[0]) + b"\0", "wrong_feature_count"),
        (None, _float32(ROWS[0]), "missing_key"),
        (b"", _float32(ROWS[0]), "missing_key"),
        (b"\xff", _float32(ROWS[0]), "invalid_key"),
        (b"a", _float32([1.0, float("inf"), 0.0]), "non_finite"),
    ],
)
def test_every_bad_float32_record_names_its_reason(key: bytes | None, value: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError) as raised:
        decode_float32_value(key, value, 3, 32)
    assert raised.value.reason == reason


def test_a_float32_batch_decoded_here_keeps_the_good_records_in_order() -> None:
    messages = [
        FakeMessage(_float32(ROWS[0]), offset=0, key=b"a"),
        FakeMessage(_float32([1.0]), offset=1, key=b"short"),
        FakeMessage(_float32(ROWS[1]), offset=2, key=b"b"),
    ]
    decoded = decode_batch_as("float32", messages, 3, 1_000)
    assert decoded.ids == ["a", "b"]
    assert [m.offset() for m in decoded.messages] == [0, 2]
    np.testing.assert_array_equal(decoded.features, np.array(ROWS, np.float32))
    assert [(d.message.offset(), d.reason) for d in decoded.dead_letters] == [(1, "wrong_feature_count")]
