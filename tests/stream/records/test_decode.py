import json
import math

import numpy as np
import pytest

from stream.errors import RecordError
from stream.records.decode import decode_batch, decode_value
from tests.fakes import FakeMessage


def _value(record_id: str, features: list[float]) -> bytes:
    return json.dumps({"id": record_id, "features": features}).encode()


def test_good_records_become_rows_in_order() -> None:
    messages = [FakeMessage(_value(f"id{i}", [i, i + 0.5]), offset=i) for i in range(3)]
    decoded = decode_batch(messages, n_features=2, max_record_bytes=1000)
    assert list(decoded.ids) == ["id0", "id1", "id2"]
    np.testing.assert_array_equal(decoded.features, np.array([[0, 0.5], [1, 1.5], [2, 2.5]], dtype=np.float32))
    assert decoded.dead_letters == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty_value"),
        (None, "empty_value"),
        (b"{not json", "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1, 2]", "invalid_schema"),
        (json.dumps({"features": [1.0, 2.0]}).encode(), "invalid_schema"),
        (json.dumps({"id": "a", "features": "1,2"}).encode(), "invalid_schema"),
        (json.dumps({"id": "a", "features": [1.0, "x"]}).encode(), "invalid_schema"),
        (json.dumps({"id": "a", "features": [1.0, True]}).encode(), "invalid_schema"),
        (json.dumps({"id": "a", "features": [1.0]}).encode(), "wrong_feature_count"),
        (b'{"id": "a", "features": [1.0, NaN]}', "non_finite"),
        (b'{"id": "a", "features": [Infinity, 1.0]}', "non_finite"),
        (json.dumps({"id": "a", "features": [1e300, 1.0]}).encode(), "out_of_range"),
        (b'{"id": "a", "features": [1.0, 2.0], "pad": "' + b"x" * 200 + b'"}', "oversized"),
    ],
)
def test_bad_values_are_refused_with_their_reason(value: bytes | None, reason: str) -> None:
    with pytest.raises(RecordError) as caught:
        decode_value(value, n_features=2, max_record_bytes=100)
    assert caught.value.reason == reason


def test_bad_records_become_dead_letters_and_good_ones_still_decode() -> None:
    messages = [
        FakeMessage(_value("good", [1.0, 2.0]), offset=0),
        FakeMessage(b"oops", offset=1),
        FakeMessage(_value("short", [1.0]), offset=2),
    ]
    decoded = decode_batch(messages, n_features=2, max_record_bytes=1000)
    assert list(decoded.ids) == ["good"]
    assert [(d.message.offset(), d.reason) for d in decoded.dead_letters] == [
        (1, "invalid_json"),
        (2, "wrong_feature_count"),
    ]
    assert all(d.error_class == "RecordError" and d.error_message for d in decoded.dead_letters)


def test_an_all_bad_batch_has_an_empty_matrix_of_the_right_width() -> None:
    decoded = decode_batch([FakeMessage(b"", offset=0)], n_features=3, max_record_bytes=10)
    assert decoded.features.shape == (0, 3)
    assert not math.isnan(float(decoded.features.sum()))


@pytest.mark.parametrize("multi_line", [False, True], ids=["one-per-line", "one-spread-over-lines"])
def test_columnar_and_record_by_record_decoding_agree(multi_line: bool) -> None:
    from stream.records.decode import decode_columnar, decode_records

    rows = np.random.default_rng(0).normal(size=(300, 4)).round(4).tolist()
    rows[7] = [1, 2, 3, 4]  # integers are numbers too
    messages = [FakeMessage(_value(f"id{i}", row), offset=i) for i, row in enumerate(rows)]
    if multi_line:
        messages.append(FakeMessage(b'{"features": [1, 2, 3, 4], "id": "pretty",\n "extra": {"a": 1}}', offset=300))
    columnar = decode_columnar([m.value() or b"" for m in messages], 4)
    assert columnar is not None
    records = decode_records(messages, 4, 10_000)
    assert columnar[0] == list(records.ids)
    np.testing.assert_array_equal(columnar[1], records.features)


@pytest.mark.parametrize(
    "odd",
    [b'{"id": 5, "features": [1, 2, 3, 4]}', b'{"id": "x"}', b'{"id": "x", "features": [1, 2, 3]}',
     b'{"id": "x", "features": [1, 2, 3, 1e400]}', b'{"id": "", "features": [1, 2, 3, 4]}', b"[]"],
)  # fmt: skip
def test_one_odd_record_sends_the_batch_down_the_explaining_path(odd: bytes) -> None:
    from stream.records.decode import decode_columnar

    messages = [FakeMessage(_value("good", [1.0, 2.0, 3.0, 4.0])), FakeMessage(odd, offset=1)]
    assert decode_columnar([m.value() or b"" for m in messages], 4) is None
    decoded = decode_batch(messages, n_features=4, max_record_bytes=1000)
    assert list(decoded.ids) == ["good"] and len(decoded.dead_letters) == 1
