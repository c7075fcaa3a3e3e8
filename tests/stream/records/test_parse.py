"""Raw records parsed on a Dask worker: the same answer as decoding on the driver, or ``None``
for any batch the driver must decode record by record (each backend)."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from stream.backend import Backend, to_host_numpy
from stream.records.decode import decode_records, one_line_values
from stream.records.formats import joined
from stream.records.parse import parse_lines, parse_part
from tests.fakes import FakeMessage

N_FEATURES = 4


def _line(record_id: str, features: list[float]) -> bytes:
    return json.dumps({"id": record_id, "features": features}).encode()


def test_clean_lines_parse_like_the_record_by_record_decoder(backend: Backend) -> None:
    rows = np.random.default_rng(0).normal(size=(50, N_FEATURES)).round(5).tolist()
    rows[3] = [1, 2, 3, 4]  # integers are numbers too
    values = [_line(f"id-{i}", row) for i, row in enumerate(rows)]
    values[7] = b'{"features": [1.5, 2, 3, 4], "id": "odd \\"one\\"", "extra": {"a": 1}}'
    parsed = parse_lines(b"\n".join(values), len(values), N_FEATURES, backend)
    assert parsed is not None
    ids, matrix = parsed
    expected = decode_records([FakeMessage(v, offset=i) for i, v in enumerate(values)], N_FEATURES, 10_000)
    assert ids.to_pylist() == list(expected.ids)
    np.testing.assert_array_equal(to_host_numpy(matrix), expected.features)


@pytest.mark.parametrize(
    "odd",
    [b'{"id": 5, "features": [1, 2, 3, 4]}', b'{"id": "x"}', b'{"id": "x", "features": [1, 2, 3]}',
     b'{"id": "x", "features": [1, 2, 3, 1e400]}', b'{"id": "", "features": [1, 2, 3, 4]}',
     b'{"id": "x", "features": [1, 2, 3, null]}', b'{"id": "x", "features": [1, 2, 3, "4"]}', b"[]", b"{not json"],
)  # fmt: skip
def test_one_unclean_record_sends_the_batch_back(odd: bytes, backend: Backend) -> None:
    values = [_line("good", [1.0, 2.0, 3.0, 4.0]), odd, _line("also good", [4.0, 3.0, 2.0, 1.0])]
    assert parse_lines(b"\n".join(values), len(values), N_FEATURES, backend) is None


@pytest.mark.parametrize(
    ("value", "one_line"),
    [(b'{"id": "a"}', True), (b"", False), (None, False), (b'{"id":\n "a"}', False), (b"x" * 101, False)],
)
def test_only_present_short_one_line_values_go_to_the_workers(value: bytes | None, one_line: bool) -> None:
    assert one_line_values([b'{"id": "b"}', value], max_record_bytes=100) is one_line


def test_float32_parts_become_arrays_of_the_backend_with_the_keys_as_ids(backend: Backend) -> None:
    rows = np.random.default_rng(1).normal(size=(20, N_FEATURES)).astype("<f4")
    keys = pa.array([f"id-{i}".encode() for i in range(20)], pa.binary())
    parsed = parse_part("float32", joined("float32", [row.tobytes() for row in rows]), keys, N_FEATURES, backend)
    assert parsed is not None
    ids, matrix = parsed
    assert ids.to_pylist() == [f"id-{i}" for i in range(20)]
    host = to_host_numpy(matrix)
    assert host.dtype == np.float32
    np.testing.assert_array_equal(host, rows)
    bad = rows.copy()
    bad[5, 2] = np.nan
    assert parse_part("float32", joined("float32", [row.tobytes() for row in bad]), keys, N_FEATURES, backend) is None
